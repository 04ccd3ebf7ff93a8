-- etcd v3 JSON gateway range (GET) of one random key among k0..k999, linearizable (etcd's default).
-- Run etcd_put.lua first so the keys exist; the first answers are checked to hold "kvs".
-- Usage: wrk -t1 -c64 -d10s --latency -s etcd_get.lua http://127.0.0.1:2379
local dir = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(dir .. "b64.lua")
local bodies = {}
for index = 0, 999 do bodies[index] = '{"key":"' .. b64("k" .. index) .. '"}' end
wrk.headers["Content-Type"] = "application/json"
request = function()
  return wrk.format("POST", "/v3/kv/range", nil, bodies[math.random(0, 999)])
end
local checked = 0
response = function(status, headers, body)
  if checked < 3 then
    checked = checked + 1
    if not body:find('"kvs"') then print("WARN etcd range without kvs: " .. body) end
  end
end
