#!/usr/bin/env python3
"""Plot nmsd-e2e's step CSV: loss vs rate and CPU seconds per million flows vs rate.

    plot_e2e.py bench-results/e2e-STAMP.csv bench-results/e2e-STAMP.png

One line per collector: the median over runs at each target rate, with the min-max range as
error bars. Needs matplotlib (benches/install-peers.sh installs python3-matplotlib; run it with
/usr/bin/python3).
"""

import csv
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    src, dst = sys.argv[1], sys.argv[2]
    # target -> rate -> list of rows
    cells = defaultdict(lambda: defaultdict(list))
    order = []
    with open(src, newline="") as f:
        for row in csv.DictReader(f):
            t = row["target"]
            if t not in order:
                order.append(t)
            cells[t][float(row["target_rate"])].append(row)
    if not order:
        print("no steps in " + src, file=sys.stderr)
        return 1

    fig, (ax_loss, ax_cpu) = plt.subplots(1, 2, figsize=(14, 5.5))

    def series(t, key, scale=1.0):
        xs, med, lo, hi = [], [], [], []
        for rate in sorted(cells[t]):
            vals = [float(r[key]) * scale for r in cells[t][rate] if r[key] != ""]
            if not vals:
                continue
            sent = statistics.median(float(r["sent_dg_per_s"]) for r in cells[t][rate])
            m = statistics.median(vals)
            xs.append(sent / 1000.0)
            med.append(m)
            lo.append(m - min(vals))
            hi.append(max(vals) - m)
        return xs, med, lo, hi

    # One colour and marker per collector in both panels; lines that coincide (several at 0 %
    # loss) stay visible through their markers and dash patterns.
    markers = "osD^vP*Xh"
    dashes = ["-", "--", "-.", ":"]
    style = {
        t: dict(
            color="C%d" % i,
            marker=markers[i % len(markers)],
            linestyle=dashes[i % len(dashes)],
            markersize=7 - (i % 3),
            capsize=3,
            label=t,
        )
        for i, t in enumerate(order)
    }
    rates = set()
    for t in order:
        xs, med, lo, hi = series(t, "loss", 100.0)
        rates.update(xs)
        if xs:
            ax_loss.errorbar(xs, med, yerr=[lo, hi], **style[t])
        if t != "ceiling":
            xs, med, lo, hi = series(t, "cpu_s_per_mflow")
            if xs:
                ax_cpu.errorbar(xs, med, yerr=[lo, hi], **style[t])

    ticks = sorted(rates)
    for ax in (ax_loss, ax_cpu):
        ax.set_xscale("log")
        ax.set_xticks(ticks)
        ax.set_xticklabels(["%g" % round(x) for x in ticks])
        ax.minorticks_off()
    ax_loss.set_yscale("symlog", linthresh=0.01)
    ax_loss.set_ylim(bottom=-0.002)  # markers at 0 % stay visible
    ax_loss.axhline(0.01, color="grey", linestyle=":", linewidth=1)
    ax_loss.set_xlabel("sent datagrams/s (thousands, log)")
    ax_loss.set_ylabel("loss % (symlog; dotted: 0.01 %)")
    ax_loss.set_title("Loss vs rate (median, min-max over runs)")
    ax_loss.grid(True, which="both", alpha=0.3)
    ax_loss.legend()

    ax_cpu.set_yscale("log")
    ax_cpu.set_xlabel("sent datagrams/s (thousands, log)")
    ax_cpu.set_ylabel("CPU seconds per million flows (log)")
    ax_cpu.set_title("CPU per million flows vs rate")
    ax_cpu.grid(True, which="both", alpha=0.3)
    ax_cpu.legend()

    fig.tight_layout()
    fig.savefig(dst, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
