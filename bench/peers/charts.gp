# charts.gp — issue 8's charts from the data files report.awk writes (run.sh passes DATA, OUT,
# MACHINE and REQUESTS): decisions/s of creditgate (blue) and its peer engines (grey), and
# durable charges/s of creditgate's ledger (pairs, and charge calls alone), Redis and PostgreSQL
# at 1 and 64 callers. Log scales: the figures span several orders of magnitude.
set terminal pngcairo size 1000,560 font "DejaVu Sans,11" noenhanced
set grid ytics
set logscale y 10
set format y "%.0s%c"
set xtics nomirror rotate by -15 scale 0
set style fill solid 0.85 border -1
set key top right

set output OUT."/decisions.png"
set title "Decisions per second on the same ".REQUESTS."-request mix (higher is better): engines in-process on one thread,\nHTTP = creditgate serve under wrk (64 connections)   —   ".MACHINE
set ylabel "decisions/s (log scale)"
set yrange [1000:*]
set xrange [-0.6:*]
set boxwidth 0.6
plot DATA."/decisions.dat" using 0:2:3:xtic(1) with boxes linecolor rgb variable notitle, \
     '' using 0:($2*1.3):4 with labels notitle

set output OUT."/charges.png"
set title "Durable charges per second (higher is better)\n".MACHINE
set ylabel "charges/s (log scale)"
set yrange [10:*]
set boxwidth 0.3
plot DATA."/charges.dat" using ($0-0.16):2:xtic(1) with boxes title "1 caller" linecolor rgb "#9dbbe0", \
     '' using ($0+0.16):3 with boxes title "64 callers" linecolor rgb "#3b6ea8", \
     '' using ($0-0.16):($2*1.3):4 with labels notitle, \
     '' using ($0+0.16):($3*1.3):5 with labels notitle
