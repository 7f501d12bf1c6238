-- wrk script: every request carries its own pre-minted UCAN invocation.
-- The token file's first line is the delegation (the ucans header); the
-- rest are invocations. Each wrk thread takes every n-th token so no two
-- requests reuse one (replay protection stays on).
local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "r"))
  ucans = f:read("*l")
  tokens = {}
  for line in f:lines() do tokens[#tokens + 1] = line end
  f:close()
  nthreads = tonumber(args[2])
  idx = tid
  path = args[3]
end

function request()
  local t = tokens[(idx % #tokens) + 1]
  idx = idx + nthreads
  return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. t, ["ucans"] = ucans })
end

function done(summary, latency, requests)
  io.write(string.format("P999_US %d\n", latency:percentile(99.9)))
  io.write(string.format("P50_US %d\nP99_US %d\n", latency:percentile(50), latency:percentile(99)))
end
