-- Every pair's kind and the lengths (characters) of its chosen and rejected sides.
SELECT kind, length(chosen) AS chosen_chars, length(rejected) AS rejected_chars
FROM pairs
ORDER BY kind, pair_id;
