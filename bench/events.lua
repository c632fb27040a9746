-- wrk script for the event scenarios of bench/bench.py (`events-20`, `events-beacon`):
-- POST /e with a JSON array of events, every eid never sent before to this server.
--
-- usage: BENCH_EVENT_BODY='[{"name":"add_to_cart","eid":"@@.1",...}]' \
--        wrk -H 'Content-Type: ...' ... -s bench/events.lua http://HOST:PORT/e -- NONCE
-- BENCH_EVENT_BODY is the body with "@@" where each eid's unique part goes (bench/eventload.py
-- makes it; each mark is followed by the event's index, so the eids of a batch differ).
-- NONCE (digits) must differ between wrk invocations against one server (bench.py passes a
-- random run id + the invocation number); each thread adds its own id, and a zero-padded
-- counter makes every request of a thread unique: eid = NONCE THREAD COUNTER "." INDEX.
--
-- Cost per request: the request (line, the -H headers, Content-Length, body) is made once per
-- thread with wrk.format, with a same-length filler where the eids go, and cut there; with a
-- fixed-width counter its length never changes, so each request is one string.format and one
-- table.concat. Checked against nginx (the bench's nginx-log config answers any POST with a
-- 405 and discards the body), wrk -t1 -c64 -d5s on core 0, once with this script and once with
-- the same body fixed in wrk.body (no Lua per request), on a machine with load average ~4:
-- 20 events: 22,300 req/s at 52% of wrk's core with this script, 23,700 req/s at 50% without,
-- i.e. ~23 us of wrk CPU per request with the script and ~21 us without (~2 us of Lua); one
-- event: ~19 us with it. So wrk alone could send ~40,000 20-event requests/s (800,000
-- events/s) and ~50,000 beacons/s, far above
-- what pixel_server answers; the bench's "wrk CPU %" column shows the headroom in every run.

local thread_count = 0

function setup(thread)
   thread_count = thread_count + 1
   thread:set("tid", thread_count)
end

local MARK = "@@"
local DIGITS = 10 -- of the counter: 10^10 requests per thread before the width changes
local prefix = ""
local pieces = {}
local counter = 0

local function split(text, sep)
   local out, from = {}, 1
   while true do
      local at = string.find(text, sep, from, true)
      if at == nil then
         out[#out + 1] = string.sub(text, from)
         return out
      end
      out[#out + 1] = string.sub(text, from, at - 1)
      from = at + #sep
   end
end

function init(args)
   local nonce = args[1]
   if nonce == nil then
      math.randomseed(os.time())
      nonce = tostring(os.time()) .. tostring(math.random(100000, 999999))
   end
   prefix = nonce .. string.format("%02d", tid or 0)
   local body = os.getenv("BENCH_EVENT_BODY")
   if body == nil or not string.find(body, MARK, 1, true) then
      error("events.lua: BENCH_EVENT_BODY must hold the body with " .. MARK .. " in each eid")
   end
   -- "\1" cannot occur in a JSON text or an HTTP head, so the filler marks only the eids
   local filler = string.rep("\1", #prefix + DIGITS)
   local whole = table.concat(split(body, MARK), filler)
   pieces = split(wrk.format("POST", nil, nil, whole), filler)
end

function request()
   counter = counter + 1
   return table.concat(pieces, prefix .. string.format("%010d", counter))
end
