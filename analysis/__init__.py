"""Pure statistical analysis of LLM vs human ratings (no database, no I/O).

Entry point: `accord.analysis.suite.compute_all`; individual metrics live in the modules
`correlation`, `baseline`, `agreement`, `binary`, `distribution`, `disparity`, `association`, `comparison`,
`persona`, `failures`, `consistency` and `subjects`.
"""
