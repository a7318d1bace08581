using Transduce.Translation;

// Usage: TranslateFile MODEL FILE — MODEL is a Transduce checkpoint or a Hugging Face MarianMT (OPUS-MT) folder.
using var translator = Translator.Load(args[0]);
using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancel.Cancel(); };   // Ctrl+C stops between batches
await foreach (string line in translator.TranslateStreamAsync(File.ReadLines(args[1]), cancellation: cancel.Token))
    Console.WriteLine(line);
