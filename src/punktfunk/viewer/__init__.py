"""`punktfunk connect HOST`: the punktfunk/2 viewer window (SDL2 through pygame-ce).

`connect.py` parses nothing graphical and is safe to import anywhere; `app.py` is the only
module that imports pygame, and only `run_connect` imports it, after checking it exists. The
host never needs pygame. `keys.py` is the pure input translation (SDL values -> wire events).
"""
