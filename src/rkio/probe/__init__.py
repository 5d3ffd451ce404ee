"""``rkio probe``: the board experiment kit behind tmp/researches/memory-analysis.md.

It answers, on a real board, the questions the memory analysis can only answer from citations and the
simulator: which models load alone, which pairs can be co-resident, whether ``base_domain_id`` matters,
whether two handles in one process break, and whether a co-resident model corrupts another's output.
Every load runs in its own child process (``rkio.probe.child``); the parent only orchestrates
(``run``), classifies (``outcomes``, ``diagnose``) and reports (``report``).
"""
