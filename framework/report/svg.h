// kvlab's own small SVG writer and the two chart kinds the reports need (no external library):
//   - LineChart: lines (optionally with markers, dashed or faint) against a linear x axis, with
//     "nice" 1-2-5 ticks, axis labels, a title and a legend on the right;
//   - Heatmap: a categorical x by categorical y grid of scores in [0, 1] coloured red -> yellow ->
//     green (the colormap of gkamradt's needle test: #F0496E, #EBB839, #0CD79F), the value written
//     in each cell, and a colour-bar legend. Each grid cell is one <rect class="cell">.
// Output is standalone SVG 1.1 (UTF-8, xmlns set), viewable in browsers and rsvg-convert.
#pragma once

#include <string>
#include <vector>

namespace kvlab::report {

std::string xml_escape(const std::string& s);

// Appends SVG elements; str() closes the document.
class SvgWriter {
 public:
  SvgWriter(int width, int height);
  void rect(double x, double y, double w, double h, const std::string& fill,
            const std::string& extra = "");
  void line(double x1, double y1, double x2, double y2, const std::string& stroke, double width = 1,
            const std::string& extra = "");
  void polyline(const std::vector<double>& xs, const std::vector<double>& ys,
                const std::string& stroke, double width, const std::string& extra = "");
  void circle(double cx, double cy, double r, const std::string& fill);
  // anchor: start | middle | end; rotate: degrees about (x, y).
  void text(double x, double y, const std::string& s, int size = 12,
            const std::string& anchor = "start", double rotate = 0, const std::string& extra = "");
  void raw(const std::string& s) { body_ += s; }
  std::string str() const;

 private:
  int w_, h_;
  std::string body_;
};

// Colour of a score in [0, 1] (clamped) as "#rrggbb": red (0) -> yellow (0.5) -> green (1).
std::string score_color(double score);
// Up to about `target` round tick values (steps 1, 2, 5 x 10^k) covering [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int target = 6);
// A tick label: %g forms; exact thousands as "k" (4096 -> "4096", 2000 -> "2k").
std::string tick_label(double v);
// The i-th colour of a colour-blind-safe palette (Okabe-Ito), cycling.
std::string palette(size_t i);

struct Series {
  std::string name;
  std::vector<double> x, y;  // same length; non-finite y values break the line
  std::string color;         // "" -> palette by index
  double width = 2;
  double opacity = 1;
  bool markers = false;
  bool dashed = false;
  bool in_legend = true;
  std::vector<std::string> labels;  // optional text beside each point (e.g. "rank=16")
};

struct LineChart {
  std::string title, x_label, y_label, subtitle;
  std::vector<Series> series;
  bool x_from_zero = false;  // include 0 in the x range
  int width = 820, height = 500;
};
std::string render_line_chart(const LineChart& c);

struct Heatmap {
  std::string title, subtitle, x_label, y_label, legend_label = "score";
  std::vector<std::string> x_ticks, y_ticks;  // categories, left to right / top to bottom
  std::vector<std::vector<double>> values;    // [y][x]; NaN: no data (grey cell)
  bool write_values = true;
};
std::string render_heatmap(const Heatmap& h);

}  // namespace kvlab::report
