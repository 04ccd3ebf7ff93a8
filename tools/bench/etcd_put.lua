-- etcd v3 JSON gateway PUT of a random key among k0..k999 with a small JSON value (durable: etcd fsyncs
-- its WAL before answering). The warm-up run creates the keys that etcd_get.lua reads.
-- Usage: wrk -t1 -c64 -d10s --latency -s etcd_put.lua http://127.0.0.1:2379
local dir = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(dir .. "b64.lua")
local bodies = {}
for index = 0, 999 do
  local value = b64('{"n":' .. index .. ',"s":"hello"}')
  bodies[index] = '{"key":"' .. b64("k" .. index) .. '","value":"' .. value .. '"}'
end
wrk.headers["Content-Type"] = "application/json"
request = function()
  return wrk.format("POST", "/v3/kv/put", nil, bodies[math.random(0, 999)])
end
