-- Process-labelled sets (ProcessBench) come without a gold answer: their
-- traces are judged by step labels, not by the final answer. A NULL answer
-- means "no gold"; sampling and verification skip such problems.
ALTER TABLE problems ALTER COLUMN answer DROP NOT NULL;
