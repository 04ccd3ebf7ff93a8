-- Durable PUT /t/key/k<0..999> with the token in env BENCH_TOKEN.
local token = os.getenv("BENCH_TOKEN")
request = function()
  local body = '{"value":{"n":' .. math.random(0, 1000000) .. ',"s":"hello"}}'
  return wrk.format("PUT", "/t/key/k" .. math.random(0, 999),
    { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }, body)
end
