-- GET /t/key/k<0..999>, all hits.
request = function()
  return wrk.format("GET", "/t/key/k" .. math.random(0, 999))
end
