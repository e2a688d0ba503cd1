-- POST /teleconsultation with a complete participant list (a doctor and a patient), so that
-- every request makes a Kaleyra room.
--   BENCH_POST_USERS=known: users from a small pool (BENCH_DOCTORS doctors, BENCH_PATIENTS
--     patients, created before the phase), so Kaleyra users are created once per user and
--     each request costs the room only;
--   BENCH_POST_USERS=new: a new patient in every request (a Kaleyra user creation each),
--     named with BENCH_NONCE so that phases never share one.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")

local mode = os.getenv("BENCH_POST_USERS") or "known"
local nonce = os.getenv("BENCH_NONCE") or "0"
local doctors = tonumber(os.getenv("BENCH_DOCTORS") or "16")
local patients = tonumber(os.getenv("BENCH_PATIENTS") or "64")
local start = os.getenv("BENCH_START") or "2031-01-15T10:00:00.000Z"

local threads = 0
function setup(thread)
   thread:set("tid", threads)
   threads = threads + 1
end

local n = 0
function request()
   n = n + 1
   local t = tid or 0
   local doctor = "bench-doctor-" .. ((n + t) % doctors)
   local patient
   if mode == "new" then
      patient = "bench-" .. nonce .. "-t" .. t .. "-p" .. n
   else
      patient = "bench-patient-" .. ((n * 7 + t) % patients)
   end
   local body = string.format(
      '{"participants":{"number":2,"data":[' ..
      '{"userId":"%s","groups":["doctor"],"fullName":"Doctor %s"},' ..
      '{"userId":"%s","groups":["patient"],"fullName":"Patient %s"}]},' ..
      '"start_date":"%s","duration_in_seconds":1800}',
      doctor, doctor, patient, patient, start)
   return wrk.format("POST", "/teleconsultation",
      { ["Content-Type"] = "application/json", ["miauserid"] = doctor }, body)
end

done = report.done
