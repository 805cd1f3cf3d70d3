-- Enqueue: ARGV = P, then per job: id, n, and n field/value pairs. Returns, per job, nil if
-- it was inserted, or the fields of the job that stands in its place.
local out = {}
local at = 2
local inserted = false
while at <= #ARGV do
    local id, n = ARGV[at], tonumber(ARGV[at + 1])
    local flat, map = read_fields(at + 2, n)
    local standing = insert(id, flat, map)
    inserted = inserted or not standing
    table.insert(out, standing)
    at = at + 2 + 2 * n
end
if inserted then
    wake()
end
return out
