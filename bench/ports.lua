-- wrk script for `pixel-pg-2` of bench/bench.py: several pixel_server instances behind one wrk.
--
-- usage: BENCH_PORTS=PORT1,PORT2 wrk -t2 -c64 ... -s bench/ports.lua http://127.0.0.1:PORT1/...
-- wrk calls setup() once per thread before the run; thread i gets the i-th port of
-- BENCH_PORTS (round robin if there are more threads), so with -t2 -c64 each instance has 32
-- keep-alive connections of its own, and wrk reports one latency histogram over both.

local ports = {}
for port in string.gmatch(os.getenv("BENCH_PORTS") or "", "%d+") do
   ports[#ports + 1] = port
end
local threads = 0

function setup(thread)
   threads = threads + 1
   if #ports > 0 then
      local port = ports[(threads - 1) % #ports + 1]
      thread.addr = wrk.lookup(wrk.host, port)[1]
   end
end
