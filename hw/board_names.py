"""The names of the supported boards, importable without amaranth (the CLI builds its ``--board``
choices from it); ``hw/boards.py`` defines one ``BoardSpec`` per name, in this order."""

BOARD_NAMES = ("icebreaker", "ulx3s-85f", "ulx3s-45f", "ulx3s-25f", "ulx3s-12f")
