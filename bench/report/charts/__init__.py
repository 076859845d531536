"""Everything that draws: `figures` writes chart files; the others draw onto given Axes
(`metric_plots` a metric against connections, `comparison_plots` two runs' ratios,
`curve_plots` the load-latency curves, `time_plots` latency over time), with each
model's colour and marker from `style`. The only modules that import matplotlib, besides
`gate`'s history page.
"""
