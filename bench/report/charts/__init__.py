"""Everything that draws: `figures` writes chart files; the others draw onto given Axes
(`plots` the per-metric charts, `curve_plots` the load-latency curves, `time_plots`
latency over time). The only modules that import matplotlib, besides `gate`'s history page.
"""
