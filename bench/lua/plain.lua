-- A plain GET of wrk's URL (e.g. /-/healthz), reported like the others.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")

done = report.done
