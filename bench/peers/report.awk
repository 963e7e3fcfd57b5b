# report.awk — reads the "result key=value ..." lines that run.sh gathered and prints issue 8's
# one table (decisions/s, charges/s, p99, ratio to creditgate) and the goals, plus the data
# files for charts.gp (-v DATA=dir). Ratio = creditgate's figure of the same kind (in-process
# decisions; ledger charges with capture at the same number of callers) ÷ the row's: > 1 means
# ahead. A charge with capture (quote + spend in one durable call, final) is the peers' one
# call — check, decrement, journal — so the ledger goals are judged on it, driven as
# redis-benchmark and pgbench drive theirs (calls in flight from one event loop) when that row
# was measured; the thread-per-caller row, charge+capture pairs and holds alone are shown beside
# it.
function kv(line, key,    m) {
  if (match(line, " " key "=\"[^\"]*\"")) return substr(line, RSTART + length(key) + 3, RLENGTH - length(key) - 4)
  if (match(line, " " key "=[^ ]*")) return substr(line, RSTART + length(key) + 2, RLENGTH - length(key) - 2)
  return ""
}
function commas(x,    s, neg) {
  s = sprintf("%.0f", x); neg = ""
  if (substr(s, 1, 1) == "-") { neg = "-"; s = substr(s, 2) }
  while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", s)
  sub(/^,/, "", s)
  return neg s
}
function met(ok) { return ok ? "MET" : "NOT MET" }
function ratio(a, b,    r) {
  if (b <= 0) return "—"
  r = a / b
  return sprintf(r >= 10 ? "%.0fx" : r >= 1 ? "%.1fx" : "%.2fx", r)
}
# creditgate's charges with capture at c callers: as the peers' clients drive them (calls in
# flight from one event loop) when measured, else one thread per caller.
function spend_ref(c) {
  return chg["creditgate-spend-async@" c] != "" ? chg["creditgate-spend-async@" c] + 0 : chg["creditgate-spend@" c] + 0
}
function row(name, dec, chg, p99, r) {
  printf "%-62s %13s %11s %10s %10s\n", name, dec, chg, p99, r
}
/^result / {
  peer = kv($0, "peer"); callers = kv($0, "callers")
  key = peer (callers != "" ? "@" callers : "")
  n++; order[n] = key; label[key] = kv($0, "label")
  dec[key] = kv($0, "decisions_per_s"); chg[key] = kv($0, "charges_per_s")
  p99us = kv($0, "p99_us"); p99[key] = p99us != "" ? p99us / 1000 : kv($0, "p99_ms")
  if (kv($0, "disagreements") != "") { disagree += kv($0, "disagreements"); compared += kv($0, "requests") + 0 }
  if (peer != "creditgate" && peer != "creditgate-http" && dec[key] != "" && dec[key] + 0 > best_dec) { best_dec = dec[key] + 0; best = key }
}
/^machine:/ { machine = $0 }
END {
  print machine
  row("", "decisions/s", "charges/s", "p99 ms", "ratio")
  cg = dec["creditgate"] + 0
  for (i = 1; i <= n; i++) {
    k = order[i]
    if (dec[k] == "") continue
    r = k == "creditgate" || k == "creditgate-http" ? "—" : ratio(cg, dec[k])
    row(label[k], commas(dec[k]), "—", sprintf("%.4f", p99[k]), r)
    name = label[k]
    if (k == "creditgate") name = "creditgate (in-process)"
    if (k == "creditgate-http") name = "creditgate (HTTP, wrk)"
    color = k ~ /^creditgate/ ? 3895976 : 11184810 # 0x3b72a8 creditgate, 0xaaaaaa peers
    if (DATA != "") printf("\"%s\" %s %d \"%s\"\n", name, dec[k], color, commas(dec[k])) > (DATA "/decisions.dat")
  }
  split("1 64", cs, " ")
  for (j = 1; j <= 2; j++) {
    c = cs[j]; ref = spend_ref(c)
    for (i = 1; i <= n; i++) {
      k = order[i]
      if (chg[k] == "" || k !~ ("@" c "$")) continue
      r = k ~ /^creditgate/ ? "—" : ratio(ref, chg[k])
      row(label[k] ", " c " caller" (c > 1 ? "s" : ""), "—", commas(chg[k]), sprintf("%.2f", p99[k]), r)
    }
  }
  if (DATA != "") {
    split("creditgate-spend creditgate-ledger creditgate-charges redis postgres", sys, " ")
    split("creditgate (charge with capture; 64: async)|creditgate (charge+capture pairs)|creditgate (holds alone)|Redis (AOF always + Lua)|PostgreSQL (naive)", sysname, "|")
    for (s = 1; s <= 5; s++) if (chg[sys[s] "@1"] != "" || chg[sys[s] "@64"] != "") {
      c64 = sys[s] == "creditgate-spend" ? spend_ref(64) : chg[sys[s] "@64"] + 0
      printf("\"%s\" %s %s \"%s\" \"%s\"\n", sysname[s], chg[sys[s] "@1"] + 0, c64,
             commas(chg[sys[s] "@1"]), commas(c64)) > (DATA "/charges.dat")
    }
  }
  print "ratio: creditgate's figure of the same kind (in-process decisions; ledger charges with capture at the same callers) ÷ the row's"
  print ""
  print "goals (issue 8):"
  if (best != "") {
    g = cg / best_dec
    printf("  in-process decisions >= 50x the fastest peer engine (%s): %.0fx — %s\n", label[best], g, met(g >= 50))
    if (dec["creditgate-http"] != "") {
      h = dec["creditgate-http"] / best_dec
      printf("  HTTP quote endpoint faster than any peer engine in-process: %s/s vs %s/s (%.2fx) — %s\n", commas(dec["creditgate-http"]), commas(best_dec), h, met(h > 1))
    } else print "  HTTP quote endpoint faster than any peer engine in-process: not measured"
  } else print "  peer engines: not measured (node packages missing: npm ci --prefix bench/peers)"
  ref = spend_ref(64)
  if (ref > 0 && chg["redis@64"] != "") printf("  durable charges/s (with capture) ahead of Redis (appendfsync always), 64 callers: %s vs %s (%.2fx) — %s\n", commas(ref), commas(chg["redis@64"]), ref / chg["redis@64"], met(ref > chg["redis@64"] + 0))
  else print "  durable charges/s ahead of Redis, 64 callers: not measured"
  if (ref > 0 && chg["postgres@64"] != "") printf("  durable charges/s (with capture) >= 10x naive PostgreSQL, 64 callers: %s vs %s (%.2fx) — %s\n", commas(ref), commas(chg["postgres@64"]), ref / chg["postgres@64"], met(ref >= 10 * chg["postgres@64"]))
  else print "  durable charges/s >= 10x naive PostgreSQL, 64 callers: not measured"
  # The other two units, for reference: a pair settles a charge in two durable calls (hold,
  # then capture); a hold alone settles nothing.
  split("creditgate-ledger creditgate-charges", other, " ")
  split("charge+capture pairs|holds alone", othername, "|")
  for (o = 1; o <= 2; o++) {
    one = chg[other[o] "@64"] + 0
    if (one > 0 && chg["redis@64"] != "" && chg["postgres@64"] != "")
      printf("  for reference, in %s, 64 callers: %s/s — %.2fx Redis, %.2fx naive PostgreSQL\n", othername[o], commas(one), one / chg["redis@64"], one / chg["postgres@64"])
  }
  printf("  zero disagreements: %d in %s answers compared — %s\n", disagree, commas(compared), met(disagree == 0 && compared > 0))
}
