-- GET /teleconsultations?limit=20 as one of the participants of the join's targets: that
-- participant's first page of the agenda (issue 23). BENCH_TARGETS as for join.lua (only the
-- user ids are used); each connection cycles through them from its own starting point.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")
local targets = require("targets")

local next_target = targets.cycle(targets.read())

function request()
   return wrk.format("GET", "/teleconsultations?limit=20", { ["miauserid"] = next_target().user })
end

done = report.done
