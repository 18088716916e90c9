-- wrk script: every request is a join of a fan never seen before.
--   wrk -t2 -c256 -d30s --latency -s loadtest/wrk-join.lua http://127.0.0.1:8080 -- demo
-- The argument after `--` is the concert (default "demo"). Fan ids are "w<run>-<thread>-<n>",
-- where <run> is the start time, so repeated runs never deduplicate against each other.
-- There is deliberately no response() callback: it makes wrk hand every answer to Lua, which
-- costs wrk about a tenth of its CPU on a machine it shares with the server. wrk counts answers
-- other than 2xx/3xx itself ("Non-2xx or 3xx responses"), and queuegate answers a join only 202
-- or an error, so that line is the count of joins not accepted.
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
end

function request()
  n = n + 1
  return wrk.format("POST", path, headers, string.format('{"userId":"w%s-%d-%d"}', run, tid, n))
end
