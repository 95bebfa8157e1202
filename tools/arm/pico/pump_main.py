# The Pico's main, frozen into the UF2: the main.py that `pumpctl flash` (or a person with
# mpremote, docs/boards.md) puts on the board's filesystem is one line, `import pump_main`.
from boards import pico

pico.main()
