"""The `interlock` command: one module per noun (serve, fake-upstream, train,
calibrate, eval, cost, spend, prices, report), assembled in `cli.main`.

The top layer: a command may import any part of Interlock, inside the command
function so that `interlock --help` stays quick. Nothing below imports `cli`.
"""
