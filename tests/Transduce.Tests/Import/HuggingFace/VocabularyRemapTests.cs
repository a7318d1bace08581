using Transduce.Import.HuggingFace;
using Transduce.Inference;

namespace Transduce.Tests.Import.HuggingFace;

/// <summary>Every family maps a folder's decoding settings into our ids the same way.</summary>
public sealed class VocabularyRemapTests
{
    [Fact]
    public void EverySpellingOfABannedIdIsBannedAndTheForcedTokenIsNeverOurBos()
    {
        // Our ids 0..5 take the folder's rows 7, 7, 2, 3, 9, 4: rows 7 is spelled twice (our <pad> 0 and our <bos> 1).
        int[] map = [7, 7, 2, 3, 9, 4];
        var folder = new GenerationSettings { BannedTokens = [7, 9], BannedSequences = [[3, 7]], ForcedBosTokenId = 7 };
        var ours = VocabularyRemap.Generation(folder, map, bosId: 1);
        Assert.Equal([0, 1, 4], ours.BannedTokens.Order());
        Assert.Equal([[3, 0], [3, 1]], ours.BannedSequences);
        Assert.Equal(0, ours.ForcedBosTokenId);
        Assert.Null(VocabularyRemap.Generation(folder with { ForcedBosTokenId = null }, map, 1).ForcedBosTokenId);
    }
}
