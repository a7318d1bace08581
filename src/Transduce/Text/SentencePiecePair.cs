namespace Transduce.Text;

/// <summary>The two SentencePiece models of a Marian-style checkpoint, with the bytes they were read from (so they can be saved again).</summary>
/// <param name="SourceBytes">The source <c>.spm</c> file.</param>
/// <param name="TargetBytes">The target <c>.spm</c> file.</param>
internal sealed record SentencePiecePair(byte[] SourceBytes, byte[] TargetBytes)
{
    /// <summary>The source model.</summary>
    public SentencePieceModel Source { get; } = SentencePieceModel.FromBytes(SourceBytes, "source.spm");

    /// <summary>The target model.</summary>
    public SentencePieceModel Target { get; } = SentencePieceModel.FromBytes(TargetBytes, "target.spm");
}
