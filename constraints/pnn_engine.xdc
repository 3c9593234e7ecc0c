# pnn_engine.xdc -- Vivado timing template for the plain pnn_engine.v (`pnn verilog --out DIR`).
#
# One synchronous clock domain: every register and memory port on `clk` (rising edge); `rst` is a
# SYNCHRONOUS, active-high reset. Ports (widths from pnn_engine.json, defaults for R=8, C=16):
#   clk in 1 | rst in 1 | cmd__payload in 64 | cmd__valid in 1 | cmd__ready out 1
#   data__payload in DW (534) | data__valid in 1 | data__ready out 1
#   res__payload out RW (264) | res__valid out 1 | res__ready in 1 | busy out 1
# Streams: a beat moves on a rising edge where valid and ready are both high.
#
# Used as an IP core (the usual case, engine inside your design) you need only the clock below,
# on whatever net drives `clk`; the I/O delays matter only if the engine's ports are device pins.
# Pin locations (PACKAGE_PIN / IOSTANDARD) are board-specific and not part of this template.

create_clock -name pnn_clk -period 10.000 [get_ports clk]

# Out-of-context / ports-on-pins budgets: 40% of the period outside the engine.
set_input_delay  -clock pnn_clk -max 4.000 [get_ports {rst cmd__* data__* res__ready}]
set_input_delay  -clock pnn_clk -min 0.000 [get_ports {rst cmd__* data__* res__ready}]
set_output_delay -clock pnn_clk -max 4.000 [get_ports {cmd__ready data__ready res__valid res__payload[*] busy}]
set_output_delay -clock pnn_clk -min 0.000 [get_ports {cmd__ready data__ready res__valid res__payload[*] busy}]

# Multipliers of the post-processing unit infer DSP48 slices (one AW x MW product per row, with an
# output register); memories infer block RAM (synchronous read ports). Nothing vendor-specific is
# instantiated, so no further constraints are needed.
