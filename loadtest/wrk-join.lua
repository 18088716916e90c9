-- wrk script: every request is a join of a fan never seen before.
--   wrk -t2 -c128 -d15s -s loadtest/wrk-join.lua http://127.0.0.1:8080 -- demo
-- The argument after `--` is the concert (default "demo"). Fan ids are "<run>-<thread>-<n>",
-- where <run> is the start time, so repeated runs never deduplicate against each other.
local threads = {}
local run = tostring(os.time())

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  concert = args[1] or "demo"
  n = 0
  path = "/v1/concerts/" .. concert .. "/queue"
  headers = { ["Content-Type"] = "application/json" }
  non202 = 0
end

function request()
  n = n + 1
  return wrk.format("POST", path, headers, string.format('{"userId":"w%s-%d-%d"}', run, tid, n))
end

function response(status, hdrs, body)
  if status ~= 202 then non202 = non202 + 1 end
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + t:get("non202") end
  io.write(string.format("non-202 answers: %d\n", bad))
  for _, p in ipairs({ 50, 90, 99, 99.9 }) do
    io.write(string.format("p%s latency: %.2f ms\n", p, latency:percentile(p) / 1000))
  end
end
