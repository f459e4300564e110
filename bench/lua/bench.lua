-- Workload 9, a real program: the Lua 5.4 interpreter (built from Debian's source package
-- against each allocator) running allocation-heavy Lua: binary trees (the classic garbage
-- collector benchmark), string building and pattern matching, and table churn. Lua's
-- allocator is realloc/free, so every table resize and string goes through the allocator.
-- Usage: lua bench.lua [SCALE]; prints check=N (the same for every allocator).
local scale = tonumber(arg[1]) or 1
local check = 0

-- binary trees: many short-lived trees and one long-lived
local function bottomup(d)
  if d == 0 then return {} end
  d = d - 1
  return { bottomup(d), bottomup(d) }
end
local function count(t)
  if t[1] then return 1 + count(t[1]) + count(t[2]) end
  return 1
end
local maxdepth = 14
local long = bottomup(maxdepth)
for d = 4, maxdepth, 2 do
  for _ = 1, math.max(1, math.floor(2 ^ (maxdepth - d + 2) * scale)) do
    check = check + count(bottomup(d))
  end
end
check = check + count(long)
long = nil

-- strings: words built, joined, matched, counted, rewritten
local seed = 42
local function rnd(n)
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed % n
end
for _ = 1, math.max(1, math.floor(6 * scale)) do
  local words = {}
  for i = 1, 20000 do
    words[#words + 1] = string.rep(string.char(97 + rnd(26)), 1 + rnd(8)) .. string.char(97 + rnd(26))
  end
  local text = table.concat(words, " ")
  local freq = {}
  for w in text:gmatch("%a+") do freq[w] = (freq[w] or 0) + 1 end
  local keys = {}
  for k, v in pairs(freq) do keys[#keys + 1] = k .. "=" .. v end
  table.sort(keys)
  check = check + #keys + #text:gsub("(%a)(%a*)", function(a, b) return b .. a end)
end

-- tables: a queue and a map growing and shrinking
for _ = 1, math.max(1, math.floor(4 * scale)) do
  local q, map = {}, {}
  for i = 1, 60000 do
    q[#q + 1] = { i, tostring(i) }
    map["k" .. i] = { n = i }
    if i % 3 == 0 then
      local k = 1 + rnd(#q) -- remove a random element: the last one takes its place
      q[k] = q[#q]
      q[#q] = nil
      map["k" .. (i - 1)] = nil
    end
  end
  local s = 0
  for _, v in pairs(map) do s = s + v.n end
  check = check + #q + s % 1000003
end
-- the peak resident set, as every workload reports it (the kernel's exact figure; the
-- rusage one is approximate for small processes)
local status = io.open("/proc/self/status")
if status then
  for line in status:lines() do
    local hwm = line:match("^VmHWM:%s*(%d+)")
    if hwm then io.write("hwm_kib=", hwm, " ") end
  end
  status:close()
end
print("check=" .. check)
