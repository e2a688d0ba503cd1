-- GET /teleconsultations?limit=20 as one of the participants of the join's targets: that
-- participant's first page of the agenda (issue 23). BENCH_TARGETS as for join.lua (only the
-- user ids are read); each connection cycles through them from its own starting point.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")

local users = {}
for line in io.lines(os.getenv("BENCH_TARGETS")) do
   local user = line:match("^%S+%s+(%S+)$")
   if user then
      users[#users + 1] = user
   end
end
assert(#users > 0, "no targets in " .. os.getenv("BENCH_TARGETS"))

local threads = 0
function setup(thread)
   thread:set("tid", threads)
   threads = threads + 1
end

local i = 0
function init(args)
   i = (tid or 0) * 7
end

function request()
   i = i % #users + 1
   return wrk.format("GET", "/teleconsultations?limit=20", { ["miauserid"] = users[i] })
end

done = report.done
