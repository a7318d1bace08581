namespace Transduce.Text;

/// <summary>The two SentencePiece models of a Marian-style checkpoint, with the bytes they were read from (so they can be saved again).</summary>
/// <param name="SourceBytes">The source <c>.spm</c> file.</param>
/// <param name="TargetBytes">The target <c>.spm</c> file.</param>
/// <param name="SourcePath">Where the source model was read from, named by its errors.</param>
/// <param name="TargetPath">Where the target model was read from.</param>
internal sealed record SentencePiecePair(byte[] SourceBytes, byte[] TargetBytes, string SourcePath = "source.spm", string TargetPath = "target.spm")
{
    /// <summary>The source model.</summary>
    public SentencePieceModel Source { get; } = SentencePieceModel.FromBytes(SourceBytes, SourcePath);

    /// <summary>The target model.</summary>
    public SentencePieceModel Target { get; } = SentencePieceModel.FromBytes(TargetBytes, TargetPath);
}
