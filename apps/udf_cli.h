// `agentry udf ...`: run, inspect and benchmark Kapacitor UDFs without Kapacitor.
//
//   agentry udf info  [--socket PATH | -- PROG ARGS...]
//   agentry udf run   [--socket PATH | -- PROG ARGS...] [--opt name=value]... [--batch]
//                     [--group-by k1,k2] [--precision ns|us|ms|s] [--input FILE]
//                     [--snapshot-out FILE] [--restore FILE]
//   agentry udf bench [--socket PATH | -- PROG ARGS...] [--points N] [--opt name=value]...
//
// Common options: --env KEY=VALUE (process UDFs), --keepalive DURATION, --connect-timeout
// DURATION (socket UDFs). The file comment of udf_cli.cc describes batch mode and the
// output; agentry/udf/host.h the session underneath.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace agentry::apps {

// Registers the `udf` subcommand (with info, run and bench) on `app`. When the command line
// selects one of them, parsing sets `action` to the function that runs it; the caller
// then returns action() from main(). `action` must outlive the parse.
void add_udf_commands(CLI::App& app, std::function<int()>& action);

}  // namespace agentry::apps
