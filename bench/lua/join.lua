-- GET /teleconsultation/:id as one of its participants (the join).
-- BENCH_TARGETS names a file of lines "<teleconsultation id> <participant user id>";
-- each connection cycles through them from its own starting point.
-- BENCH_PACE_MS (optional): each connection waits this long after an answer before its next
-- request, so that the load is a fixed moderate rate instead of all the machine can take
-- (wrk measures latency from the request's sending, the wait left out).
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")
local targets = require("targets")

local next_target = targets.cycle(targets.read())

local pace = tonumber(os.getenv("BENCH_PACE_MS") or "")
if pace then
   function delay()
      return pace
   end
end

function request()
   local t = next_target()
   return wrk.format("GET", "/teleconsultation/" .. t.id, { ["miauserid"] = t.user })
end

done = report.done
