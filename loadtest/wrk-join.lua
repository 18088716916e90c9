-- wrk script: joins, in the gateway's identity mode.
--   wrk -t2 -c256 -d30s --latency -s loadtest/wrk-join.lua http://127.0.0.1:8080 -- demo [body [LANES]|anonymous|jwt TOKENS]
-- Arguments after `--`: the concert (default "demo"), the identity mode (default body), and in
-- jwt mode a file of identity tokens, one per line (examples/fan_tokens.rs makes them).
--   body:      every request is a fan never seen before: "w<run>-<thread>-<n>", where <run> is the
--              start time, so repeated runs never deduplicate against each other; with LANES
--              (a comma-separated list) request n names lane n mod the list's length;
--   anonymous: every request sends {} and the gateway names a new fan;
--   jwt:       request n carries token n (mod the file's length) as Authorization: Bearer; an
--              account that comes round again rejoins (the gateway does the same work; the
--              consumer deduplicates).
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
  mode = args[2] or "body"
  n = 0
  path = "/v1/concerts/" .. concert .. "/queue"
  headers = { ["Content-Type"] = "application/json" }
  tokens = {}
  lanes = {}
  if mode == "body" and args[3] then
    for lane in string.gmatch(args[3], "[^,]+") do
      lanes[#lanes + 1] = lane
    end
  end
  if mode == "jwt" then
    for line in io.lines(args[3]) do
      tokens[#tokens + 1] = line
    end
    -- The threads start at different places in the file.
    n = tid * math.floor(#tokens / 2)
  end
end

function request()
  n = n + 1
  if mode == "anonymous" then
    return wrk.format("POST", path, headers, "{}")
  elseif mode == "jwt" then
    headers["Authorization"] = "Bearer " .. tokens[(n % #tokens) + 1]
    return wrk.format("POST", path, headers, "{}")
  end
  if #lanes > 0 then
    local body = string.format('{"userId":"w%s-%d-%d","lane":"%s"}', run, tid, n, lanes[(n % #lanes) + 1])
    return wrk.format("POST", path, headers, body)
  end
  return wrk.format("POST", path, headers, string.format('{"userId":"w%s-%d-%d"}', run, tid, n))
end
