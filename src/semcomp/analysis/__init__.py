"""Pure analysis over DataFrames: rate–distortion tables and summaries, curves, Pareto
fronts, BD-rate, iso-satisfaction, agreement with human ratings, Table 1, statistics
and figures.

Nothing here imports the study, the stages, the surveys or model code: the
report (:mod:`semcomp.report`) and the app read the store and call these.
"""
