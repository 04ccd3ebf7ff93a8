-- A small base64 encoder for wrk's LuaJIT (no bit operations needed); etcd's JSON gateway wants keys
-- and values base64-encoded. Loaded by etcd_put.lua and etcd_get.lua with dofile().
local alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'

function b64(data)
  local bits = data:gsub('.', function(char)
    local text, byte = '', char:byte()
    for position = 8, 1, -1 do
      text = text .. (byte % 2 ^ position - byte % 2 ^ (position - 1) > 0 and '1' or '0')
    end
    return text
  end)
  local encoded = (bits .. '0000'):gsub('%d%d%d?%d?%d?%d?', function(sextet)
    if #sextet < 6 then return '' end
    local index = 0
    for position = 1, 6 do
      index = index + (sextet:sub(position, position) == '1' and 2 ^ (6 - position) or 0)
    end
    return alphabet:sub(index + 1, index + 1)
  end)
  return encoded .. ({ '', '==', '=' })[#data % 3 + 1]
end
