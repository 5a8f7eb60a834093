#include "agentry/command/protocol.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace agentry::command {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

json parse(std::string_view text) { return json::parse(text); }

TEST(StatusMessages, StandardTexts) {
  EXPECT_EQ(standard_message(kStatusNoHandler), "Could not find a handler for the requested command");
  EXPECT_EQ(standard_message(kStatusBadRequest), "Could not parse valid JSON from request");
  EXPECT_EQ(standard_message(kStatusConnectionError), "Connection error");
  EXPECT_EQ(standard_message(kStatusTimeout), "Connection timeout before reading valid request");
  EXPECT_EQ(standard_message(kStatusHandlerError),
            "The command handler encountered an error processing your request");
  EXPECT_FALSE(standard_message(kStatusInternalError).empty());
  EXPECT_TRUE(standard_message(kStatusOk).empty());
  EXPECT_TRUE(standard_message(107).empty());
}

TEST(StatusMessages, CodesAreTheProtocolValues) {
  EXPECT_EQ(kStatusNoHandler, 101);
  EXPECT_EQ(kStatusBadRequest, 102);
  EXPECT_EQ(kStatusConnectionError, 103);
  EXPECT_EQ(kStatusTimeout, 104);
  EXPECT_EQ(kStatusHandlerError, 105);
  EXPECT_EQ(kStatusInternalError, 106);
}

TEST(MakeResponse, CarriesStatusAndMessage) {
  const json j = parse(standard_response(kStatusTimeout));
  EXPECT_EQ(j.at("Status"), 104);
  EXPECT_EQ(j.at("StatusMessage"), "Connection timeout before reading valid request");
  EXPECT_EQ(j.size(), 2u);
}

TEST(MakeResponse, EscapesAndSurvivesBadUtf8) {
  const std::string text = make_response(105, std::string("quote \" backslash \\ newline \n bad \xff end"));
  ASSERT_TRUE(is_json_object(text)) << text;
  const json j = parse(text);
  EXPECT_EQ(j.at("Status"), 105);
  EXPECT_THAT(j.at("StatusMessage").get<std::string>(), HasSubstr("quote \" backslash \\ newline \n bad "));
}

TEST(Listeners, NamesAndPipePaths) {
  EXPECT_EQ(listener_name(Listener::kAgent), "agent");
  EXPECT_EQ(listener_name(Listener::kPlugin), "plugin");
  EXPECT_EQ(pipe_name("/run/agentry/command", Listener::kAgent), "/run/agentry/command/agent");
  EXPECT_EQ(pipe_name("/run/agentry/command/", Listener::kPlugin), "/run/agentry/command/plugin");
  ASSERT_TRUE(parse_listener("plugin").is_ok());
  EXPECT_EQ(*parse_listener("plugin"), Listener::kPlugin);
  EXPECT_EQ(*parse_listener("agent"), Listener::kAgent);
  EXPECT_FALSE(parse_listener("Agent").is_ok());
  EXPECT_FALSE(parse_listener("").is_ok());
}

TEST(CommandName, MatchesTheKeyIgnoringCase) {
  for (const char* text : {R"({"Command":"x.y"})", R"({"command":"x.y"})", R"({"COMMAND":"x.y"})",
                           R"({"cOmMaNd":"x.y","other":1})", " \n{\"Command\" : \"x.y\"}\t "}) {
    Result<std::string> name = command_name(text);
    ASSERT_TRUE(name.is_ok()) << text << ": " << name.status().to_string();
    EXPECT_EQ(*name, "x.y") << text;
  }
}

TEST(CommandName, LastMatchingKeyWins) {
  EXPECT_EQ(*command_name(R"({"Command":"first","command":"second"})"), "second");
  EXPECT_EQ(*command_name(R"({"command":"first","Command":"second"})"), "second");
}

TEST(CommandName, OnlyTopLevelKeysCount) {
  EXPECT_EQ(*command_name(R"({"Inner":{"Command":"nested"},"Command":"top"})"), "top");
  EXPECT_EQ(*command_name(R"({"Inner":{"Command":"nested"}})"), "");
  EXPECT_EQ(*command_name(R"({"List":[{"Command":"nested"}]})"), "");
  EXPECT_EQ(*command_name(R"({"Other":"Command"})"), "");
}

TEST(CommandName, MissingOrNullIsEmpty) {
  EXPECT_EQ(*command_name("{}"), "");
  EXPECT_EQ(*command_name(R"({"Commands":"x"})"), "");
  EXPECT_EQ(*command_name(R"({"Command":null})"), "");
}

TEST(CommandName, StringsWithBracesAndEscapes) {
  EXPECT_EQ(*command_name(R"({"Command":"a}b{c\"d\\e\u0041"})"), "a}b{c\"d\\eA");
}

TEST(CommandName, RejectsNonStringCommands) {
  for (const char* text : {R"({"Command":5})", R"({"Command":true})", R"({"Command":{"a":1}})",
                           R"({"Command":["x"]})", R"({"command":"x","COMMAND":1.5})"}) {
    Result<std::string> name = command_name(text);
    EXPECT_FALSE(name.is_ok()) << text;
    EXPECT_EQ(name.status().code(), StatusCode::kInvalidArgument) << text;
  }
}

TEST(CommandName, RejectsAnythingButOneValidObject) {
  for (const char* text : {"", "   ", "[]", "5", "\"Command\"", "{", R"({"Command":"x"} {})", R"({"Command":"x",})",
                           R"({'Command':'x'})", "{\"Command\":\"\xff\"}", R"({"Command":"x"}garbage)"}) {
    EXPECT_FALSE(command_name(text).is_ok()) << text;
  }
}

TEST(Request, ParseKeepsEveryField) {
  Result<Request> request = Request::parse(R"({"command":"agent.config.getoption","Option":"Core.Level","N":[1,2]})");
  ASSERT_TRUE(request.is_ok()) << request.status().to_string();
  EXPECT_EQ(request->command, "agent.config.getoption");
  EXPECT_EQ(request->fields.at("Option"), "Core.Level");
  EXPECT_EQ(request->fields.at("N"), json::array({1, 2}));
  EXPECT_EQ(request->fields.at("command"), "agent.config.getoption");
}

TEST(Request, ToJsonUsesTheCanonicalKey) {
  Request request;
  request.command = "x.y";
  request.fields = json{{"command", "stale"}, {"Extra", 1}};
  const json j = parse(request.to_json());
  EXPECT_EQ(j.at("Command"), "x.y");
  EXPECT_EQ(j.at("Extra"), 1);
  EXPECT_FALSE(j.contains("command"));
  EXPECT_EQ(*command_name(request.to_json()), "x.y");
}

TEST(Request, ParseRejectsWhatCommandNameRejects) {
  EXPECT_FALSE(Request::parse(R"({"Command":1})").is_ok());
  EXPECT_FALSE(Request::parse("[1]").is_ok());
}

TEST(Response, ParseReadsStatusIgnoringCase) {
  Result<Response> r = Response::parse(R"({"status":3,"statusmessage":"no","Value":"v"})");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->status, 3);
  EXPECT_EQ(r->status_message, "no");
  EXPECT_EQ(r->fields, json({{"Value", "v"}}));
}

TEST(Response, ParseDefaultsAndErrors) {
  Result<Response> empty = Response::parse("{}");
  ASSERT_TRUE(empty.is_ok());
  EXPECT_EQ(empty->status, 0);
  EXPECT_EQ(empty->status_message, "");
  EXPECT_FALSE(Response::parse(R"({"Status":"0"})").is_ok());
  EXPECT_FALSE(Response::parse(R"({"Status":1.5})").is_ok());
  EXPECT_FALSE(Response::parse(R"({"Status":4294967296})").is_ok());
  EXPECT_FALSE(Response::parse(R"({"Status":0,"StatusMessage":7})").is_ok());
  EXPECT_FALSE(Response::parse(R"({"Status":{"a":1}})").is_ok());
  EXPECT_FALSE(Response::parse(R"({"Status":0,"StatusMessage":["x"]})").is_ok());
  EXPECT_FALSE(Response::parse("not json").is_ok());
  Result<Response> negative = Response::parse(R"({"Status":-2})");
  ASSERT_TRUE(negative.is_ok());
  EXPECT_EQ(negative->status, -2);
}

TEST(Response, RoundTrip) {
  Response r;
  r.status = 2;
  r.status_message = "option empty";
  r.fields = json{{"Option", "Core.X"}, {"status", 99}};  // the member wins over a stray key
  Result<Response> back = Response::parse(r.to_json());
  ASSERT_TRUE(back.is_ok());
  EXPECT_EQ(back->status, 2);
  EXPECT_EQ(back->status_message, "option empty");
  EXPECT_EQ(back->fields, json({{"Option", "Core.X"}}));
}

TEST(IsJsonObject, AcceptsOnlyOneObject) {
  EXPECT_TRUE(is_json_object("{}"));
  EXPECT_TRUE(is_json_object(" {\"a\":[1,{\"b\":null}]}\n"));
  EXPECT_FALSE(is_json_object(""));
  EXPECT_FALSE(is_json_object("[]"));
  EXPECT_FALSE(is_json_object("null"));
  EXPECT_FALSE(is_json_object("{} {}"));
  EXPECT_FALSE(is_json_object("{\"a\":}"));
}

// ------------------------------------------------------------------ RequestReader

TEST(RequestReader, WholeObjectAtOnce) {
  RequestReader reader(1024);
  EXPECT_EQ(reader.feed(R"({"Command":"x"})"), RequestReader::State::kComplete);
  EXPECT_EQ(reader.request(), R"({"Command":"x"})");
}

TEST(RequestReader, OneByteAtATimeWithBracesInStrings) {
  const std::string object = R"({"Command":"x","Data":"}{][\"}","Nested":{"a":["}"]}})";
  RequestReader reader(1024);
  for (std::size_t i = 0; i < object.size(); ++i) {
    const RequestReader::State state = reader.feed(std::string_view(&object[i], 1));
    EXPECT_EQ(state, i + 1 == object.size() ? RequestReader::State::kComplete : RequestReader::State::kNeedMore)
        << "at byte " << i;
  }
  EXPECT_EQ(reader.request(), object);
  EXPECT_EQ(*command_name(reader.request()), "x");
}

TEST(RequestReader, IgnoresTrailingBytes) {
  RequestReader reader(1024);
  EXPECT_EQ(reader.feed("  {\"Command\":\"x\"}trailing {garbage"), RequestReader::State::kComplete);
  EXPECT_EQ(reader.request(), R"({"Command":"x"})");
  EXPECT_EQ(reader.feed("more"), RequestReader::State::kComplete);  // sticky
}

TEST(RequestReader, NotAnObjectIsBadRequest) {
  RequestReader reader(1024);
  EXPECT_EQ(reader.feed("[1,2]"), RequestReader::State::kError);
  const json j = parse(reader.error_response());
  EXPECT_EQ(j.at("Status"), 102);
  EXPECT_EQ(j.at("StatusMessage"), "Could not parse valid JSON from request");
}

TEST(RequestReader, OverSizeSaysSo) {
  RequestReader reader(64);
  EXPECT_EQ(reader.feed(R"({"Command":"x","Pad":")"), RequestReader::State::kNeedMore);
  EXPECT_EQ(reader.feed(std::string(100, 'a')), RequestReader::State::kError);
  const json j = parse(reader.error_response());
  EXPECT_EQ(j.at("Status"), 102);
  EXPECT_EQ(j.at("StatusMessage"), "request exceeds 64 bytes");
}

TEST(RequestReader, ExactlyAtTheCapIsAccepted) {
  std::string object = R"({"Command":"x","Pad":")";
  object += std::string(64 - object.size() - 2, 'a');
  object += "\"}";
  ASSERT_EQ(object.size(), 64u);
  RequestReader reader(64);
  EXPECT_EQ(reader.feed(object), RequestReader::State::kComplete);
}

TEST(RequestReader, TooDeepIsAStandardBadRequest) {
  RequestReader reader(1 << 20);
  EXPECT_EQ(reader.feed(std::string(2000, '[').insert(0, "{\"a\":")), RequestReader::State::kError);
  EXPECT_EQ(parse(reader.error_response()).at("StatusMessage"), "Could not parse valid JSON from request");
}

}  // namespace
}  // namespace agentry::command
