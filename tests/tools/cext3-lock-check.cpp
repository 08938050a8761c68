// cext3-lock-check: an independent checker of lock event logs (docs/LOCKS.md,
// "Event logs and the checker"). It knows nothing of the lock service's code:
// it reads what the users of the locks saw and recorded, and checks
//   * no two incompatible holds of one resource overlap in time
//     (NL/PR/EX; PR+PR is the only compatible pair besides NL), whoever holds
//     them (two nodes, or two clients of one node);
//   * every request is granted, within --max-wait-ms.
//
// Input lines (any number of files, merged by time):
//   <mono_ns> <node> <client> <resource> <event> <mode>
// events: request  the client asks for <mode> (a new lock or an upgrade)
//         grant    the client now holds <mode> (lock() returned)
//         convert  the client's hold changes to <mode> (after an upgrade
//                  returned; before a downgrade is asked)
//         release  the client gives its hold up (logged before unlock())
//         timeout  the request of the client gave up (a failure here)
//         recovered  node <node> is dead and recovered: its holds and
//                  requests end here (<client> <resource> <mode> are "-")
// A hold is logged from after the grant to before the release, so it is
// inside the true hold: overlaps reported are real.
// Exit 0 clean, 1 violations found, 2 bad input.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

namespace {

enum Mode { NL = 0, PR = 1, EX = 2, NONE = 3 };

bool parse_mode(const std::string& s, Mode* m) {
  if (s == "NL") *m = NL;
  else if (s == "PR") *m = PR;
  else if (s == "EX") *m = EX;
  else if (s == "-") *m = NONE;
  else return false;
  return true;
}
const char* name(Mode m) { return m == NL ? "NL" : m == PR ? "PR" : m == EX ? "EX" : "-"; }
bool compatible(Mode a, Mode b) { return a == NL || b == NL || (a == PR && b == PR); }

struct Event {
  uint64_t t = 0;
  std::string node, client, resource, what;
  Mode mode = NONE;
  std::string where;  // file:line
};

struct Hold {
  uint64_t start = 0, end = UINT64_MAX;  // end UINT64_MAX: never released
  std::string node, client, resource;
  Mode mode = NONE;
  std::string where;
};

std::string fmt_t(uint64_t t) { return t == UINT64_MAX ? "end-of-log" : std::to_string(t); }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Check merged lock event logs for conflicting holds and unserved requests"};
  std::vector<std::string> files;
  double max_wait_ms = 10000;
  size_t max_report = 20;
  app.add_option("logs", files, "event log files")->required()->check(CLI::ExistingFile);
  app.add_option("--max-wait-ms", max_wait_ms, "a request granted later than this is a violation");
  app.add_option("--max-report", max_report, "print at most this many violations of each kind");
  CLI11_PARSE(app, argc, argv);

  std::vector<Event> ev;
  for (const std::string& f : files) {
    std::ifstream in(f);
    std::string line;
    size_t no = 0;
    while (std::getline(in, line)) {
      ++no;
      if (line.empty() || line[0] == '#') continue;
      std::istringstream ls(line);
      Event e;
      std::string mode, extra;
      if (!(ls >> e.t >> e.node >> e.client >> e.resource >> e.what >> mode) || (ls >> extra) ||
          !parse_mode(mode, &e.mode)) {
        std::fprintf(stderr, "cext3-lock-check: %s:%zu: malformed line '%s': expected '<mono_ns> <node> <client> <resource> <event> <mode>'\n",
                     f.c_str(), no, line.c_str());
        return 2;
      }
      static const std::set<std::string> kEvents = {"request", "grant", "convert", "release", "timeout", "recovered"};
      if (!kEvents.count(e.what) || (e.what != "recovered" && e.what != "release" && e.what != "timeout" && e.mode == NONE)) {
        std::fprintf(stderr, "cext3-lock-check: %s:%zu: unknown event or missing mode in '%s'\n", f.c_str(), no, line.c_str());
        return 2;
      }
      e.where = f + ":" + std::to_string(no);
      ev.push_back(std::move(e));
    }
  }
  // Merge by time; at equal times a release/recovery comes first (an end at
  // t and a start at t do not overlap).
  auto rank = [](const Event& e) { return e.what == "release" || e.what == "recovered" || e.what == "convert" ? 0 : 1; };
  std::stable_sort(ev.begin(), ev.end(), [&](const Event& a, const Event& b) {
    return std::make_tuple(a.t, rank(a)) < std::make_tuple(b.t, rank(b));
  });

  using Key = std::tuple<std::string, std::string, std::string>;  // node, client, resource
  std::map<Key, Hold> open;                                         // current hold per client and resource
  std::map<Key, std::pair<uint64_t, std::string>> waiting;          // request time, where
  std::vector<Hold> holds;
  std::vector<std::string> wait_problems, protocol_problems;
  size_t n_wait = 0, n_proto = 0, grants = 0;
  double worst_wait_ms = 0;
  auto problem = [&](std::vector<std::string>& v, size_t& n, const std::string& s) {
    if (v.size() < max_report) v.push_back(s);
    ++n;
  };
  auto close = [&](const Key& k, uint64_t t) {
    auto it = open.find(k);
    if (it == open.end()) return false;
    it->second.end = t;
    holds.push_back(it->second);
    open.erase(it);
    return true;
  };
  auto start = [&](const Event& e) {
    Hold h;
    h.start = e.t;
    h.node = e.node;
    h.client = e.client;
    h.resource = e.resource;
    h.mode = e.mode;
    h.where = e.where;
    open[{e.node, e.client, e.resource}] = h;
  };
  auto served = [&](const Event& e, const Key& k) {
    auto w = waiting.find(k);
    if (w == waiting.end()) return;
    double ms = static_cast<double>(e.t - w->second.first) / 1e6;
    worst_wait_ms = std::max(worst_wait_ms, ms);
    if (ms > max_wait_ms)
      problem(wait_problems, n_wait, "slow grant: " + e.node + "/" + e.client + " " + e.resource + " " + name(e.mode) +
                                         " waited " + std::to_string(ms) + " ms (bound " + std::to_string(max_wait_ms) +
                                         " ms), requested at " + w->second.second);
    waiting.erase(w);
  };

  for (const Event& e : ev) {
    Key k{e.node, e.client, e.resource};
    if (e.what == "request") {
      waiting[k] = {e.t, e.where};
    } else if (e.what == "grant") {
      ++grants;
      served(e, k);
      if (open.count(k)) problem(protocol_problems, n_proto, "grant while already holding: " + e.where);
      close(k, e.t);
      start(e);
    } else if (e.what == "convert") {
      served(e, k);
      if (!close(k, e.t)) problem(protocol_problems, n_proto, "convert without a hold: " + e.where);
      start(e);
    } else if (e.what == "release") {
      if (!close(k, e.t)) problem(protocol_problems, n_proto, "release without a hold: " + e.where);
    } else if (e.what == "timeout") {
      auto w = waiting.find(k);
      problem(wait_problems, n_wait, "request never granted (gave up): " + e.node + "/" + e.client + " " + e.resource +
                                         " at " + e.where);
      if (w != waiting.end()) waiting.erase(w);
    } else if (e.what == "recovered") {
      // A dead node: its holds end at its recovery; its requests die with it.
      std::vector<Key> ks;
      for (auto& [key, h] : open)
        if (std::get<0>(key) == e.node) ks.push_back(key);
      for (const Key& key : ks) close(key, e.t);
      std::erase_if(waiting, [&](const auto& kv) { return std::get<0>(kv.first) == e.node; });
    }
  }
  for (auto& [k, h] : open) holds.push_back(h);  // never released: lasts to the end
  for (auto& [k, w] : waiting)
    problem(wait_problems, n_wait, "request never granted: " + std::get<0>(k) + "/" + std::get<1>(k) + " " + std::get<2>(k) +
                                       " at " + w.second);

  // Overlaps: per resource, sweep holds by start; compare with the active ones.
  std::map<std::string, std::vector<const Hold*>> by_res;
  for (const Hold& h : holds)
    if (h.mode != NL) by_res[h.resource].push_back(&h);
  std::vector<std::string> overlap_problems;
  size_t n_overlap = 0;
  for (auto& [res, v] : by_res) {
    std::sort(v.begin(), v.end(), [](const Hold* a, const Hold* b) { return a->start < b->start; });
    std::vector<const Hold*> active;
    for (const Hold* h : v) {
      std::erase_if(active, [&](const Hold* a) { return a->end <= h->start; });
      for (const Hold* a : active) {
        if (compatible(a->mode, h->mode)) continue;
        problem(overlap_problems, n_overlap,
                "conflict on " + res + ": " + a->node + "/" + a->client + " " + name(a->mode) + " [" + fmt_t(a->start) + ", " +
                    fmt_t(a->end) + ") from " + a->where + " overlaps " + h->node + "/" + h->client + " " + name(h->mode) + " [" +
                    fmt_t(h->start) + ", " + fmt_t(h->end) + ") from " + h->where);
      }
      active.push_back(h);
    }
  }
  for (const auto& s : overlap_problems) std::printf("VIOLATION %s\n", s.c_str());
  for (const auto& s : wait_problems) std::printf("VIOLATION %s\n", s.c_str());
  for (const auto& s : protocol_problems) std::printf("VIOLATION %s\n", s.c_str());
  std::printf("cext3-lock-check: %zu events, %zu grants, %zu resources, worst wait %.2f ms; %zu conflicting overlaps, %zu unserved/slow requests, %zu malformed sequences\n",
              ev.size(), grants, by_res.size(), worst_wait_ms, n_overlap, n_wait, n_proto);
  return (n_overlap || n_wait || n_proto) ? 1 : 0;
}
