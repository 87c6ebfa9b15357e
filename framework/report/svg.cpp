#include "framework/report/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "framework/core/error.h"

namespace kvlab::report {

namespace {

std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f", v);
  std::string s = b;
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s == "-0" ? "0" : s;
}

constexpr const char* kFont = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\"";

double text_width(const std::string& s, int size) {
  return 0.6 * size * static_cast<double>(s.size());
}

}  // namespace

std::string xml_escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    switch (ch) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += ch;
    }
  }
  return o;
}

SvgWriter::SvgWriter(int width, int height) : w_(width), h_(height) {}

void SvgWriter::rect(double x, double y, double w, double h, const std::string& fill,
                     const std::string& extra) {
  body_ += "<rect x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"" + num(w) + "\" height=\"" +
           num(h) + "\" fill=\"" + fill + "\"" + (extra.empty() ? "" : " " + extra) + "/>\n";
}

void SvgWriter::line(double x1, double y1, double x2, double y2, const std::string& stroke,
                     double width, const std::string& extra) {
  body_ += "<line x1=\"" + num(x1) + "\" y1=\"" + num(y1) + "\" x2=\"" + num(x2) + "\" y2=\"" +
           num(y2) + "\" stroke=\"" + stroke + "\" stroke-width=\"" + num(width) + "\"" +
           (extra.empty() ? "" : " " + extra) + "/>\n";
}

void SvgWriter::polyline(const std::vector<double>& xs, const std::vector<double>& ys,
                         const std::string& stroke, double width, const std::string& extra) {
  body_ += "<polyline fill=\"none\" stroke=\"" + stroke + "\" stroke-width=\"" + num(width) +
           "\" stroke-linejoin=\"round\"" + (extra.empty() ? "" : " " + extra) + " points=\"";
  for (size_t i = 0; i < xs.size(); ++i) {
    if (i) body_ += ' ';
    body_ += num(xs[i]);
    body_ += ',';
    body_ += num(ys[i]);
  }
  body_ += "\"/>\n";
}

void SvgWriter::circle(double cx, double cy, double r, const std::string& fill) {
  body_ += "<circle cx=\"" + num(cx) + "\" cy=\"" + num(cy) + "\" r=\"" + num(r) + "\" fill=\"" +
           fill + "\" stroke=\"white\" stroke-width=\"1\"/>\n";
}

void SvgWriter::text(double x, double y, const std::string& s, int size, const std::string& anchor,
                     double rotate, const std::string& extra) {
  body_ += "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" font-size=\"" + std::to_string(size) +
           "\" " + kFont + " text-anchor=\"" + anchor + "\"";
  if (rotate != 0)
    body_ += " transform=\"rotate(" + num(rotate) + " " + num(x) + " " + num(y) + ")\"";
  body_ += (extra.empty() ? "" : " " + extra) + ">" + xml_escape(s) + "</text>\n";
}

std::string SvgWriter::str() const {
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" "
         "version=\"1.1\" width=\"" +
         std::to_string(w_) + "\" height=\"" + std::to_string(h_) + "\" viewBox=\"0 0 " +
         std::to_string(w_) + " " + std::to_string(h_) + "\">\n<rect x=\"0\" y=\"0\" width=\"" +
         std::to_string(w_) + "\" height=\"" + std::to_string(h_) +
         "\" fill=\"white\" class=\"background\"/>\n" + body_ + "</svg>\n";
}

std::string score_color(double s) {
  if (!std::isfinite(s)) s = 0;
  s = std::clamp(s, 0.0, 1.0);
  // gkamradt's LinearSegmentedColormap ["#F0496E", "#EBB839", "#0CD79F"].
  static const double stops[3][3] = {{240, 73, 110}, {235, 184, 57}, {12, 215, 159}};
  const int seg = s < 0.5 ? 0 : 1;
  const double t = s < 0.5 ? s * 2 : (s - 0.5) * 2;
  char b[8];
  int c[3];
  for (int i = 0; i < 3; ++i)
    c[i] = static_cast<int>(std::lround(stops[seg][i] + t * (stops[seg + 1][i] - stops[seg][i])));
  std::snprintf(b, sizeof b, "#%02x%02x%02x", c[0], c[1], c[2]);
  return b;
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / std::max(1, target - 1);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> t;
  // Multiples of the step by integer index; round to the step's decimals so 0.6 prints as 0.6.
  const double k0 = std::ceil(lo / step - 1e-9);
  const double scale = std::pow(10.0, std::max(0.0, -std::floor(std::log10(step)) + 2));
  for (double k = k0; k * step <= hi + step * 1e-9; k += 1) {
    const double v = std::round(k * step * scale) / scale;
    t.push_back(v == 0 ? 0.0 : v);
  }
  return t;
}

std::string tick_label(double v) {
  char b[32];
  if (std::abs(v) >= 1000 && std::fmod(v, 1000) == 0) {
    std::snprintf(b, sizeof b, "%gk", v / 1000);
    return b;
  }
  if (std::abs(v) >= 1e6 || (std::abs(v) < 1e-3 && v != 0))
    std::snprintf(b, sizeof b, "%.3g", v);
  else
    std::snprintf(b, sizeof b, "%.6g", v);
  return b;
}

std::string palette(size_t i) {
  static const char* p[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                            "#E69F00", "#56B4E9", "#882255", "#999933"};
  return p[i % 8];
}

std::string render_line_chart(const LineChart& c) {
  SvgWriter s(c.width, c.height);
  double legend_w = 0;
  for (const auto& se : c.series)
    if (se.in_legend) legend_w = std::max(legend_w, text_width(se.name, 12) + 40);
  legend_w = std::min(legend_w, 260.0);
  const double left = 80, right = c.width - 20 - legend_w, top = c.subtitle.empty() ? 50 : 66,
               bottom = c.height - 60;
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  for (const auto& se : c.series)
    for (size_t i = 0; i < se.x.size(); ++i) {
      if (!std::isfinite(se.x[i]) || !std::isfinite(se.y[i])) continue;
      xmin = std::min(xmin, se.x[i]);
      xmax = std::max(xmax, se.x[i]);
      ymin = std::min(ymin, se.y[i]);
      ymax = std::max(ymax, se.y[i]);
    }
  if (!std::isfinite(xmin)) xmin = 0, xmax = 1, ymin = 0, ymax = 1;
  if (c.x_from_zero) xmin = std::min(xmin, 0.0);
  if (xmax == xmin) xmin -= 0.5, xmax += 0.5;
  if (ymax == ymin) {
    const double d = std::max(std::abs(ymin) * 0.1, 0.5);
    ymin -= d, ymax += d;
  } else {
    const double pad = (ymax - ymin) * 0.05;
    ymin -= pad, ymax += pad;
  }
  // Widen each range out to whole tick steps so the data never touches the frame unlabelled.
  auto widen = [](double& lo, double& hi, int target) {
    const auto t = nice_ticks(lo, hi, target);
    if (t.size() < 2) return t;
    const double step = t[1] - t[0];
    lo = std::floor(lo / step + 1e-9) * step;
    hi = std::ceil(hi / step - 1e-9) * step;
    return nice_ticks(lo, hi, target);
  };
  const auto xt = widen(xmin, xmax, 7), yt = widen(ymin, ymax, 6);
  auto X = [&](double v) { return left + (v - xmin) / (xmax - xmin) * (right - left); };
  auto Y = [&](double v) { return bottom - (v - ymin) / (ymax - ymin) * (bottom - top); };

  s.text(c.width / 2.0, 28, c.title, 18, "middle", 0, "font-weight=\"bold\"");
  if (!c.subtitle.empty()) s.text(c.width / 2.0, 48, c.subtitle, 12, "middle", 0, "fill=\"#555\"");
  for (double v : yt) {
    s.line(left, Y(v), right, Y(v), "#e5e5e5", 1);
    s.line(left - 5, Y(v), left, Y(v), "#333", 1);
    s.text(left - 8, Y(v) + 4, tick_label(v), 12, "end");
  }
  for (double v : xt) {
    s.line(X(v), top, X(v), bottom, "#f0f0f0", 1);
    s.line(X(v), bottom, X(v), bottom + 5, "#333", 1);
    s.text(X(v), bottom + 20, tick_label(v), 12, "middle");
  }
  s.rect(left, top, right - left, bottom - top, "none", "stroke=\"#333\" stroke-width=\"1\"");
  s.text((left + right) / 2, c.height - 18, c.x_label, 14, "middle");
  s.text(22, (top + bottom) / 2, c.y_label, 14, "middle", -90);

  double ly = top + 10;
  for (size_t k = 0; k < c.series.size(); ++k) {
    const auto& se = c.series[k];
    const std::string col = se.color.empty() ? palette(k) : se.color;
    std::string extra = "class=\"series\"";
    if (se.dashed) extra += " stroke-dasharray=\"6 4\"";
    if (se.opacity < 1) extra += " stroke-opacity=\"" + num(se.opacity) + "\"";
    std::vector<double> xs, ys;
    auto flush = [&] {
      if (xs.size() > 1) s.polyline(xs, ys, col, se.width, extra);
      xs.clear(), ys.clear();
    };
    for (size_t i = 0; i < se.x.size(); ++i) {
      if (!std::isfinite(se.y[i]) || !std::isfinite(se.x[i])) {
        flush();
        continue;
      }
      xs.push_back(X(se.x[i]));
      ys.push_back(Y(se.y[i]));
    }
    flush();
    if (se.markers)
      for (size_t i = 0; i < se.x.size(); ++i)
        if (std::isfinite(se.y[i]) && std::isfinite(se.x[i]))
          s.circle(X(se.x[i]), Y(se.y[i]), 4, col);
    for (size_t i = 0; i < se.labels.size() && i < se.x.size(); ++i)
      if (!se.labels[i].empty() && std::isfinite(se.y[i]) && std::isfinite(se.x[i]))
        s.text(X(se.x[i]) + 6, Y(se.y[i]) - 7, se.labels[i], 10, "start", 0,
               "fill=\"" + col + "\" stroke=\"white\" stroke-width=\"3\" paint-order=\"stroke\"");
    if (se.in_legend) {
      const double lx = right + 16;
      s.line(lx, ly, lx + 22, ly, col, 3, se.dashed ? "stroke-dasharray=\"6 4\"" : "");
      if (se.markers) s.circle(lx + 11, ly, 4, col);
      s.text(lx + 28, ly + 4, se.name, 12);
      ly += 20;
    }
  }
  return s.str();
}

std::string render_heatmap(const Heatmap& h) {
  const size_t nx = h.x_ticks.size(), ny = h.y_ticks.size();
  KVLAB_CHECK(h.values.size() == ny) << "heatmap rows " << h.values.size() << " != " << ny;
  const double cw = std::clamp(640.0 / std::max<size_t>(nx, 1), 28.0, 90.0);
  const double ch = std::clamp(420.0 / std::max<size_t>(ny, 1), 18.0, 40.0);
  const double left = 90, top = h.subtitle.empty() ? 50 : 66;
  const double pw = cw * static_cast<double>(nx), ph = ch * static_cast<double>(ny);
  const int width = static_cast<int>(left + pw + 130),
            height = static_cast<int>(top + std::max(ph, 120.0) + 70);
  SvgWriter s(std::max(width, 420), height);
  s.text(std::max(width, 420) / 2.0, 28, h.title, 18, "middle", 0, "font-weight=\"bold\"");
  if (!h.subtitle.empty())
    s.text(std::max(width, 420) / 2.0, 48, h.subtitle, 12, "middle", 0, "fill=\"#555\"");
  for (size_t y = 0; y < ny; ++y) {
    KVLAB_CHECK(h.values[y].size() == nx)
        << "heatmap row " << y << " has " << h.values[y].size() << " values";
    for (size_t x = 0; x < nx; ++x) {
      const double v = h.values[y][x];
      const bool has = std::isfinite(v);
      const double px = left + cw * static_cast<double>(x), py = top + ch * static_cast<double>(y);
      s.rect(px, py, cw, ch, has ? score_color(v) : "#d9d9d9",
             std::string("class=\"cell\" stroke=\"white\" stroke-width=\"1\"") +
                 (has ? " data-score=\"" + num(v) + "\"" : " data-score=\"none\""));
      if (h.write_values && cw >= 30 && ch >= 16)
        s.text(px + cw / 2, py + ch / 2 + 4, has ? num(v) : "n/a", ch >= 24 ? 11 : 9, "middle", 0,
               "fill=\"#222\"");
    }
    s.text(left - 8, top + ch * (static_cast<double>(y) + 0.5) + 4, h.y_ticks[y], 12, "end");
  }
  for (size_t x = 0; x < nx; ++x) {
    const double px = left + cw * (static_cast<double>(x) + 0.5);
    if (cw >= 50)
      s.text(px, top + ph + 18, h.x_ticks[x], 12, "middle");
    else
      s.text(px + 4, top + ph + 10, h.x_ticks[x], 11, "end", -45);
  }
  s.text(left + pw / 2, top + ph + 56, h.x_label, 14, "middle");
  s.text(22, top + ph / 2, h.y_label, 14, "middle", -90);
  // Colour bar: score 1 (green) on top, 0 (red) at the bottom.
  const double bx = left + pw + 30, bh = std::max(ph, 120.0), bw = 18;
  s.raw(
      "<defs><linearGradient id=\"scoregrad\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">"
      "<stop offset=\"0\" stop-color=\"" +
      score_color(0) + "\"/><stop offset=\"0.5\" stop-color=\"" + score_color(0.5) +
      "\"/><stop offset=\"1\" stop-color=\"" + score_color(1) + "\"/></linearGradient></defs>\n");
  s.rect(bx, top, bw, bh, "url(#scoregrad)",
         "class=\"legend\" stroke=\"#333\" stroke-width=\"0.5\"");
  for (double v : {0.0, 0.25, 0.5, 0.75, 1.0}) {
    const double y = top + bh - v * bh;
    s.line(bx + bw, y, bx + bw + 4, y, "#333", 1);
    s.text(bx + bw + 7, y + 4, num(v), 11);
  }
  s.text(bx + bw / 2, top + bh + 18, h.legend_label, 12, "middle");
  return s.str();
}

}  // namespace kvlab::report
