-- wrk script for the `unique-ua` scenario of bench/bench.py: every request carries a
-- User-Agent the server has never seen, so no user-agent cache can help.
--
-- usage: wrk ... -s bench/unique_ua.lua URL -- NONCE
-- NONCE (digits) must differ between wrk invocations against one server (bench.py passes
-- a random run id + the invocation number); each wrk thread adds its own id, and a counter
-- makes every request of a thread unique. The -H headers given to wrk are kept.

local thread_count = 0

function setup(thread)
   thread_count = thread_count + 1
   thread:set("tid", thread_count)
end

local counter = 0
local suffix = ""
local headers = {}

function init(args)
   local nonce = args[1]
   if nonce == nil then
      math.randomseed(os.time())
      nonce = tostring(os.time()) .. tostring(math.random(100000, 999999))
   end
   suffix = nonce .. string.format("%02d", tid or 0)
   for name, value in pairs(wrk.headers) do
      headers[name] = value
   end
end

function request()
   counter = counter + 1
   headers["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
      .. "(KHTML, like Gecko) Chrome/124.0." .. counter .. "." .. suffix .. " Safari/537.36"
   return wrk.format(nil, nil, headers)
end
