"""The dashboard: a web page served by Rhetor itself at `/ui` (rhetor.ui.routes), built from static files shipped
in the package (vanilla JavaScript, and uPlot vendored under static/vendor for the charts). The page talks only
to Rhetor's public API; this package knows nothing of the gateway, providers or stores.
"""
