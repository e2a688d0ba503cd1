-- GET /teleconsultation/:id as one of its participants (the join).
-- BENCH_TARGETS names a file of lines "<teleconsultation id> <participant user id>";
-- each connection cycles through them from its own starting point.
-- BENCH_PACE_MS (optional): each connection waits this long after an answer before its next
-- request, so that the load is a fixed moderate rate instead of all the machine can take
-- (wrk measures latency from the request's sending, the wait left out).
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")

local targets = {}
for line in io.lines(os.getenv("BENCH_TARGETS")) do
   local id, user = line:match("^(%S+)%s+(%S+)$")
   if id then
      targets[#targets + 1] = { path = "/teleconsultation/" .. id, user = user }
   end
end
assert(#targets > 0, "no targets in " .. os.getenv("BENCH_TARGETS"))

local threads = 0
function setup(thread)
   thread:set("tid", threads)
   threads = threads + 1
end

local i = 0
function init(args)
   i = (tid or 0) * 7
end

local pace = tonumber(os.getenv("BENCH_PACE_MS") or "")
if pace then
   function delay()
      return pace
   end
end

function request()
   i = i % #targets + 1
   local t = targets[i]
   return wrk.format("GET", t.path, { ["miauserid"] = t.user })
end

done = report.done
