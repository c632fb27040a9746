-- wrk script for the `pixel-p99-at-half` scenario of bench/bench.py: open-ish load at a set
-- rate instead of wrk's usual closed loop (next request as soon as the last one returns).
--
-- usage: wrk ... -s bench/paced.lua URL -- MEAN_DELAY_MS
-- Before each request a connection waits MEAN_DELAY_MS on average; with C connections that
-- is about C * 1000 / MEAN_DELAY_MS requests/s (a little less: the response time adds to it).
-- The wait is drawn uniformly from [0.5, 1.5] x the mean so the connections do not march in
-- step, then rounded up or down at random to whole milliseconds (wrk's delay() unit) so that
-- the mean stays exact. wrk measures latency from the write, so the wait is not in it.

local mean_ms = 10

function init(args)
   mean_ms = tonumber(args[1]) or mean_ms
   math.randomseed(os.time())
end

function delay()
   local wait = mean_ms * (0.5 + math.random())
   local whole = math.floor(wait)
   if math.random() < wait - whole then
      whole = whole + 1
   end
   return whole
end
