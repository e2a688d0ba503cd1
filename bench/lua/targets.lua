-- Shared by join.lua and agenda.lua: the targets of BENCH_TARGETS (lines "<teleconsultation
-- id> <participant user id>"), each connection cycling through them from its own start.
local M = {}

-- The targets, as { id = ..., user = ... }.
function M.read()
   local targets = {}
   for line in io.lines(os.getenv("BENCH_TARGETS")) do
      local id, user = line:match("^(%S+)%s+(%S+)$")
      if id then
         targets[#targets + 1] = { id = id, user = user }
      end
   end
   assert(#targets > 0, "no targets in " .. os.getenv("BENCH_TARGETS"))
   return targets
end

-- Defines wrk's setup() and init() so that each thread starts at its own place, and
-- returns the function that gives a thread's next target.
function M.cycle(targets)
   local threads = 0
   function setup(thread)
      thread:set("tid", threads)
      threads = threads + 1
   end

   local i = 0
   function init(args)
      i = (tid or 0) * 7
   end

   return function()
      i = i % #targets + 1
      return targets[i]
   end
end

return M
