-- charge.lua — the Redis ledger peer: check a member's balance, decrement it and append a
-- journal entry, atomically (Redis runs a script alone). Run with appendonly yes and
-- appendfsync always, so a reply means the write is on disk.
-- KEYS[1]: the member's balance key; KEYS[2]: the journal stream. ARGV[1]: credits to charge.
-- Returns {1, balance left} when charged, {0, balance} when the member cannot pay.
local credits = tonumber(ARGV[1])
local balance = tonumber(redis.call('GET', KEYS[1]))
if balance == nil then return redis.error_reply('no such member ' .. KEYS[1]) end
if credits <= 0 then return redis.error_reply('credits must be positive') end
if balance < credits then return {0, balance} end
local left = redis.call('DECRBY', KEYS[1], credits)
redis.call('XADD', KEYS[2], '*', 'member', KEYS[1], 'credits', -credits, 'balance', left)
return {1, left}
