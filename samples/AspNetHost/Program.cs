// An ASP.NET Core application of one's own that also serves translations:
//   dotnet run --project samples/AspNetHost -- --model runs/d2l-gru --api-key 0123456789abcdef --urls http://127.0.0.1:5090
//   curl -H 'X-Api-Key: 0123456789abcdef' -H 'Content-Type: application/json' -d '{"text":["go ."]}' http://127.0.0.1:5090/v1/translate
using AspNetHost;

using var app = HostApp.Build(args);
app.Run();
