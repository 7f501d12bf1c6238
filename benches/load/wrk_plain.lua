-- wrk script for peers without tokens, and for capgate with one reused token
-- (args: token file or "-", path).
function init(args)
  path = args[2]
  headers = {}
  if args[1] ~= "-" then
    local f = assert(io.open(args[1], "r"))
    headers["ucans"] = f:read("*l")
    headers["Authorization"] = "Bearer " .. f:read("*l")
    f:close()
  end
end

function request()
  return wrk.format("GET", path, headers)
end

function done(summary, latency, requests)
  io.write(string.format("P999_US %d\n", latency:percentile(99.9)))
  io.write(string.format("P50_US %d\nP99_US %d\n", latency:percentile(50), latency:percentile(99)))
end
