# pnn_engine.sdc -- timing template for the plain pnn_engine.v (`pnn verilog --out DIR`) in an
# SDC flow (Quartus, Libero, Radiant/Diamond with SDC, OpenSTA, Vivado reads it too).
#
# The engine is ONE synchronous clock domain: every flip-flop and every memory port is clocked by
# `clk` (rising edge); `rst` is a SYNCHRONOUS, active-high reset sampled on `clk`. There are no
# combinational paths from inputs to outputs except the stream handshakes named below, and no
# multicycle or false paths inside the core. Port widths depend on the configuration: read them
# from pnn_engine.json ("ports"); defaults (R=8, C=16) are given in the comments.
#
#   port            dir   width (default)     meaning
#   clk             in    1                   clock
#   rst             in    1                   synchronous reset, active high
#   cmd__payload    in    64                  command word        } stream: a beat moves on a
#   cmd__valid      in    1                                       } rising edge where valid
#   cmd__ready      out   1                                       } and ready are both high
#   data__payload   in    DW (534)            data beat (LOAD_W / LOAD_A / LOAD_PP)
#   data__valid     in    1
#   data__ready     out   1
#   res__payload    out   RW (264)            result or counter beat
#   res__valid      out   1
#   res__ready      in    1
#   busy            out   1                   work in flight (status LED, idle detection)
#
# Edit CLK_PERIOD_NS to your target; the I/O budgets below assume the engine's neighbours are
# registered logic in the same clock domain (the usual case: a bus bridge or DMA next to it).

set CLK_PERIOD_NS 10.000
create_clock -name pnn_clk -period $CLK_PERIOD_NS [get_ports clk]

# Budget: 40% of the period for logic outside the engine on every input and output.
set IO_BUDGET [expr {0.4 * $CLK_PERIOD_NS}]
set_input_delay  -clock pnn_clk -max $IO_BUDGET [get_ports {rst cmd__* data__* res__ready}]
set_input_delay  -clock pnn_clk -min 0.0        [get_ports {rst cmd__* data__* res__ready}]
set_output_delay -clock pnn_clk -max $IO_BUDGET [get_ports {cmd__ready data__ready res__valid res__payload[*] busy}]
set_output_delay -clock pnn_clk -min 0.0        [get_ports {cmd__ready data__ready res__valid res__payload[*] busy}]

# If rst comes straight from a pin or another clock domain, put a reset synchronizer in front of
# the engine (do NOT false-path rst: it is a synchronous reset and must meet setup/hold).
