using System.Text;
using static Hone.Synthetic.GeneralLexicon;
using Hone.Tensors;

namespace Hone.Synthetic;

/// <summary>
/// Generates everyday English from a compact grammar (<see cref="TemplateText"/> phrases over
/// <see cref="GeneralLexicon"/>): stories with a cause and its effect, animal facts that stay true across the corpus,
/// weather reports whose temperatures fit the weather, diaries, dialogues whose sums add up, lessons, journeys, jobs,
/// recipes, letters, towns and match reports. Each genre keeps its characters, pronouns and tenses consistent within
/// a document, so a small model has real structure to learn rather than a few repeated templates.
/// No e-commerce vocabulary (<see cref="GeneralLexicon"/>). Deterministic per seed.
/// </summary>
public static class GeneralCorpus
{
    /// <summary>The quickstart's size: about 1M tokens with a 2,048-token vocabulary, generated in well under a second.</summary>
    public const long DefaultBytes = 4_000_000;

    /// <summary>Documents until their UTF-8 size (with one separator byte each) reaches <paramref name="targetBytes"/>.</summary>
    public static IReadOnlyList<string> Generate(ulong seed, long targetBytes)
    {
        if (targetBytes < 0) throw new ArgumentException("target size must not be negative");
        var random = new Xoshiro256(seed ^ 0x47454E4552414C00); // "GENERAL": a stream of its own per seed
        var weights = Genres.Select(g => g.Weight).ToArray();
        var documents = new List<string>();
        long bytes = 0;
        while (bytes < targetBytes)
        {
            string document = Genres[random.Weighted(weights)].Write(new Scene(random));
            documents.Add(document);
            bytes += Encoding.UTF8.GetByteCount(document) + 1;
        }
        return documents;
    }

    /// <summary>The genres, with their share of the documents.</summary>
    public static IReadOnlyList<(string Name, double Share)> GenreShares =>
        Genres.Select(g => (g.Name, g.Weight / Genres.Sum(x => x.Weight))).ToArray();

    /// <summary>The last <paramref name="heldOutFraction"/> of the documents held out (documents are independent draws).</summary>
    public static (IReadOnlyList<string> Train, IReadOnlyList<string> HeldOut) Split(IReadOnlyList<string> documents, double heldOutFraction)
    {
        if (heldOutFraction is < 0 or >= 1) throw new ArgumentException("the held-out fraction must be in [0, 1)");
        int held = (int)Math.Round(documents.Count * heldOutFraction);
        return (documents.Take(documents.Count - held).ToList(), documents.Skip(documents.Count - held).ToList());
    }

    sealed record Genre(string Name, double Weight, Func<Scene, string> Write);

    static readonly Genre[] Genres =
    [
        new("story", 26, Story),
        new("day", 16, Day),
        new("dialogue", 12, Dialogue),
        new("diary", 8, Diary),
        new("animal facts", 7, AnimalFacts),
        new("weather report", 5, WeatherReport),
        new("lesson", 5, Lesson),
        new("journey", 5, Journey),
        new("letter", 5, Letter),
        new("job", 4, JobProfile),
        new("match report", 4, MatchReport),
        new("recipe", 3, Recipe),
        new("town", 3, Town),
    ];

    // ---- the scene: who and what a document is about -----------------------------------------------------------

    /// <summary>Slots bound for one document (characters with their pronouns, the place, the day…); other slot names
    /// draw a fresh word from the lexicon each time.</summary>
    sealed class Scene(Xoshiro256 random)
    {
        readonly Dictionary<string, string> _slots = new(StringComparer.Ordinal);
        public Xoshiro256 Random { get; } = random;

        public string this[string key] { get => _slots[key]; set => _slots[key] = value; }

        /// <summary>Binds a person under a role: "hero" → {hero} {he} {him} {his} {himself} {child}; "friend" → {friend}
        /// {fhe} {fhim} {fhis} {fchild}; "rel" (a family word) → {rel} {rhe} {rhim} {rhis}.</summary>
        public void Cast(string role, string name, bool female)
        {
            string p = role switch { "hero" => "", "friend" => "f", "rel" => "r", _ => role + "_" };
            _slots[role] = name;
            _slots[p + "he"] = female ? "she" : "he";
            _slots[p + "him"] = female ? "her" : "him";
            _slots[p + "his"] = female ? "her" : "his";
            _slots[p + "himself"] = female ? "herself" : "himself";
            _slots[p + "child"] = female ? "girl" : "boy";
        }

        public Person CastPerson(string role, Person? other = null)
        {
            Person person;
            do person = Random.One(People); while (other != null && person.Name == other.Name);
            Cast(role, person.Name, person.Female);
            return person;
        }

        public void CastRelative()
        {
            var (word, female) = Random.One(Relatives);
            Cast("rel", word, female);
        }

        public string Say(string template) => TemplateText.Expand(template, Random, Resolve);
        /// <summary>Expands a phrase for use inside another sentence (no capital, no tidying).</summary>
        public string Fill(string template) => TemplateText.Expand(template, Random, Resolve, tidy: false);
        public string Say(IReadOnlyList<string> templates) => Say(Random.One(templates));

        string Resolve(string name) => _slots.TryGetValue(name, out var bound) ? bound : name switch
        {
            "food" => Random.One(Foods),
            "drink" => Random.One(Drinks),
            "color" => Random.One(Colors),
            "good" => Random.One(GoodFeelings),
            "bad" => Random.One(BadFeelings),
            "place" => Random.One(Places),
            "town" => Random.One(Towns),
            "weekday" => Random.One(Weekdays),
            "month" => Random.One(Months),
            "season" => Random.One(Seasons),
            "daypart" => Random.One(DayParts),
            "room" => Random.One(Rooms),
            "spot" => Random.One(HidingSpots),
            "sight" => Random.One(Sights),
            "name" => Random.One(People).Name,
            "petkind" => Random.One(PetKinds),
            "petname" => Random.One(PetNames),
            "present" => Random.One(Presents),
            "instrument" => Random.One(Instruments),
            "subject" => Random.One(Subjects),
            "region" => Random.One(Regions),
            "meal" => Random.One(Meals),
            "vehicle" => Random.One(Vehicles),
            "fact" => Random.One(Facts),
            "n" => Random.Between(2, 9).ToString(System.Globalization.CultureInfo.InvariantCulture),
            "noun" => Random.One(Objects),
            "obj" => Random.Chance(0.7) ? $"{Random.One(ObjectAdjectives)} {Random.One(Objects)}" : Random.One(Objects),
            "adv" => Random.One(Adverbs),
            "dayadj" => Random.One(DayAdjectives),
            "outdoor" => Random.One(Outdoors),
            "building" => Random.One(Buildings),
            "breakfast" => Random.One(Breakfasts),
            "dinner" => Random.One(["fish and potatoes", "soup and bread", "pasta", "rice and beans", "a vegetable pie", "pizza", "noodles", "baked potatoes", "a big salad", "stew"]),
            "person" => Random.Chance(0.6) ? Random.One(People).Name : Random.One(Neighbours),
            "game" => Random.One(Games),
            "purpose" => Random.One(Purposes),
            "topic" => Random.One(Topics),
            "skill" => Random.One(Skills),
            "material" => Random.One(Materials),
            "fruit" => Random.One(Fruits),
            "animal" => Random.One(Animals).Name,
            "animals" => Random.One(Animals).Plural,
            "clock" => Clock(Random.Between(1, 12), Random.One(QuarterHours)),
            "nword" => NumberWord(Random.Between(2, 12)),
            _ => throw new FormatException($"unknown slot '{{{name}}}' in the general corpus"),
        };

        static readonly int[] QuarterHours = [0, 15, 30, 45];

        public string Clock(int hour, int minute) =>
            Random.Chance(0.5) ? ClockWords(hour, minute) : $"{hour}:{minute:00}";
    }

    // ---- the clause grammar: one thing someone did, in the past tense ------------------------------------------

    static readonly string[] Buildings = ["the library", "the bakery", "the museum", "the cinema", "the town hall", "the station", "the school", "the swimming pool", "the sports hall", "the café"];
    static readonly string[] Breakfasts = ["porridge", "toast", "eggs", "pancakes", "yoghurt", "cereal", "bread and honey", "a muffin", "fruit", "toast and jam", "a boiled egg"];

    static readonly string[] Fruits = ["apples", "pears", "plums", "cherries", "blackberries", "strawberries", "raspberries", "apricots", "gooseberries"];

    /// <summary>{S} the subject, {P} its pronoun, {Poss} its possessive; everything else comes from the lexicon, so
    /// each clause has thousands of forms.</summary>
    static readonly string[] Clauses =
    [
        "{S} [carried|took] a {obj} to {place}.", "{S} found a {obj} {spot}.", "{S} [carefully |]painted the {noun} {color}.",
        "{S} gave a {obj} to {person}.", "{S} met {person} {outdoor}[, and {they} talked about {topic}|].", "{S} watched the {animals} {outdoor}.",
        "{S} [counted|tried to draw|took a photo of] the {animals} {outdoor}.", "{S} picked some {fruit} {outdoor}.", "{S} cooked {food} for {person}.",
        "{S} bought {food} and {food} at the market.", "{S} read a book about {animals}[ {outdoor}| in bed| by the window|].",
        "{S} wrote a [long |short |]letter to {person}.",
        "{S} sat {outdoor} and [listened to the birds|looked at the clouds|ate an apple|read for a while|watched the boats go by].",
        "{S} walked {outdoor} with {person}.", "{S} helped {person} to [carry|move|clean|fix] a {obj}.",
        "{S} [cleaned|tidied|swept] {room} [until it was spotless|before lunch|while singing|without being asked].",
        "{S} [drew|painted] a picture of a {animal} [with {color} pencils|on a big sheet of paper|for {person}].",
        "{S} [rode|cycled] to {place} [in the rain|in the sunshine|with {person}|as fast as {P} could].",
        "{S} played {game} with {person} [in the garden|{outdoor}|after school|until it got dark].", "{S} made a {obj} out of {material}.",
        "{S} learned how to {skill} from {person}.", "{S} looked for {Poss} {noun} but found a {obj} instead.",
        "{S} [heard|saw|spotted] a {animal} {outdoor}.", "{S} waited for {person} outside {building}[ for {nword} minutes|].",
        "{S} [washed|dried] the [dishes|cups|plates|clothes] and put them away.", "{S} showed {person} {Poss} {obj}.",
        "{S} lost {Poss} {noun} {outdoor}, but {person} found it.", "{S} [laughed|smiled] when {person} told a joke about a {animal}.",
        "{S} tried {food} for the first time and [liked it|did not like it much|asked for more].", "{S} [{adv} |][fixed|mended] an old {noun}.",
        "{S} {adv} [climbed|walked] up the hill and looked at {sight}.", "{S} sang a song about a {color} {animal}.",
    ];

    static readonly string[] ClauseTimes =
    [
        "On {weekday}", "In the {daypart}", "After {meal}", "Before {meal}", "Early in the morning", "Later that day", "At {clock}", "Last {season}",
        "That {daypart}", "After school", "At the weekend", "One {dayadj} {daypart}", "The next day", "A little later",
    ];

    /// <summary>One past-tense sentence about a subject ("Anna", "she", "I"), sometimes with a time in front and a
    /// reason after.</summary>
    static string Clause(Scene s, string subject, string pronoun, string possessive, bool time = true, string? timePhrase = null)
    {
        s["S"] = subject; s["P"] = pronoun; s["Poss"] = possessive;
        s["they"] = subject == "I" ? "we" : "they";
        string clause = s.Say(Clauses);
        if (s.Random.Chance(0.2)) clause = clause[..^1] + s.Fill(" because {P} wanted to {purpose}.");
        timePhrase ??= time && s.Random.Chance(0.45) ? s.Say(ClauseTimes) : null;
        return timePhrase == null ? clause : TemplateText.Tidy($"{timePhrase}, {LowerFirst(clause, subject)}");
    }

    /// <summary>Lower-cases the first letter unless the sentence starts with the (capitalised) subject name or "I".</summary>
    static string LowerFirst(string sentence, string subject) =>
        sentence.StartsWith(subject, StringComparison.Ordinal) && subject != "he" && subject != "she" && subject != "they" || sentence.Length == 0
            ? sentence : char.ToLowerInvariant(sentence[0]) + sentence[1..];

    static readonly string[] DayTimes =
        ["Early in the morning", "After breakfast", "In the morning", "Before lunch", "At lunchtime", "After lunch", "In the afternoon", "Later", "Before dinner", "In the evening", "After dinner", "Before bed"];

    static string Day(Scene s)
    {
        var hero = s.CastPerson("hero");
        s["weekday"] = s.Random.One(Weekdays);
        s["dayadj"] = s.Random.One(DayAdjectives);
        var lines = new List<string>
        {
            s.Say(["[{weekday}|Yesterday|Last {weekday}] was a {dayadj} day for {hero}.", "{hero} had a {dayadj} day on {weekday}.", "This is what {hero} did on {weekday}."]),
        };
        var times = s.Random.Distinct(Enumerable.Range(0, DayTimes.Length).ToArray(), s.Random.Between(4, 7)).Order().ToList();
        bool first = true;
        foreach (int t in times)
        {
            string subject = first || s.Random.Chance(0.3) ? hero.Name : s["he"];
            lines.Add(Clause(s, subject, s["he"], s["his"], timePhrase: DayTimes[t]));
            first = false;
        }
        lines.Add(s.Say(["By the end of the day, {hero} was [tired but happy|ready for bed|very sleepy].", "It was a {dayadj} day.",
                         "{hero} went to bed early that night.", ""]));
        return Sentences(lines);
    }

    static string Sentences(IEnumerable<string> sentences) => string.Join(" ", sentences.Where(s => s.Length > 0));

    // ---- stories ------------------------------------------------------------------------------------------------

    static readonly string[] StoryOpenings =
    [
        "[Once upon a time|Not long ago|One {season}], there was a [young|little|curious|kind|cheerful|clever] {child} called {hero} who lived in {town}.",
        "{hero} lived in [a small house in|a flat above the bakery in|a cottage near] {town} with {his} {rel} and a {petkind} called {pet}.",
        "[It was|One day it was] a [quiet|busy|bright|cold|warm|windy] {weekday} {daypart} in {town}.",
        "[Last|One] {season}, {hero} [was staying with|went to visit] {his} {rel} in {town}.",
        "{hero} was [seven|eight|nine|ten] years old and [loved animals|loved to draw|was always asking questions|never sat still for long].",
        "",
    ];

    static readonly string[] StoryEndings =
    [
        "", "", "That night, {hero} [fell asleep quickly|slept very well|dreamed about {place}|dreamed about {animals}].",
        "It had been a {dayadj} day for {hero}[ and {friend}| and {his} {rel}|].", "[{hero} would always remember that {weekday}.|{hero} told {his} {rel} all about it at dinner.|The next morning, {hero} woke up smiling.]",
        "Before bed, {hero} [drew a picture of the day|wrote about it in {his} diary|told {pet} the {petkind} all about it].",
    ];

    static string Story(Scene s)
    {
        var hero = s.CastPerson("hero");
        s.CastPerson("friend", hero);
        s.CastRelative();
        s["pet"] = s.Random.One(PetNames);
        s["town"] = s.Random.One(Towns);
        s["place"] = s.Random.One(Places);
        s["weekday"] = s.Random.One(Weekdays);
        s["daypart"] = s.Random.One(DayParts);
        var (plot, season) = s.Random.One(Plots);
        s["season"] = season ?? s.Random.One(Seasons);
        var sentences = new List<string> { s.Say(StoryOpenings) };
        sentences.AddRange(plot(s));
        sentences.Add(s.Say(StoryEndings));
        return Sentences(sentences);
    }

    /// <summary>Plots, with the season they need (null: any).</summary>
    static readonly (Func<Scene, IEnumerable<string>> Plot, string? Season)[] Plots =
    [
        (RainyDay, null), (LostThing, null), (Cooking, null), (FoundAnimal, null), (NewFriend, null), (BrokenThing, null), (DayOut, "summer"),
        (DayOut, null), (Practice, null), (LateForSchool, null), (Garden, "spring"), (SnowDay, "winter"), (Birthday, null),
    ];

    static IEnumerable<string> RainyDay(Scene s)
    {
        var (act, _, _) = s.Random.One(Activities);
        var (indoor, indoorPast, _) = s.Random.One(IndoorActivities);
        s["act"] = act;
        s["indoor"] = indoor;
        s["indoorpast"] = indoorPast;
        yield return s.Say(["{hero} [wanted|had planned] to {act} at {place} with {friend}.", "{hero} and {friend} were going to {act} at {place} that afternoon.",
                            "All week, {hero} had been looking forward to going to {place} to {act}."]);
        yield return s.Say(["But when {he} looked out of the window, [it was raining hard|dark clouds covered the sky|rain was pouring down].",
                            "Just as {he} put on {his} shoes, it started to rain.", "But then the sky over {town} turned grey, and big drops of rain began to fall."]);
        yield return s.Say(["{hero} felt {bad} because {he} could not go outside.", "\"Oh no,\" said {hero}. \"Now we can't go to {place}.\"",
                            "{hero} pressed {his} nose against the glass and sighed."]);
        yield return s.Say(["Then {his} {rel} had an idea. \"[Why don't we|Let's] {indoor} instead?\" {rhe} said.",
                            "{his} {rel} smiled and said, \"We can {indoor} until the rain stops.\"", "So {hero} decided to {indoor} instead."]);
        yield return s.Say(["They {indoorpast} in {room}[ all afternoon| until dinner time| while the rain tapped on the window].",
                            "{hero} {indoorpast}, and the time went by quickly."]);
        yield return s.Say(["[Later|In the evening|After an hour or two], the rain stopped and the sun came out.", "By the evening, the sky [was clear again|was full of stars|had turned pink and gold].",
                            "The rain did not stop, but {hero} did not mind anymore."]);
        yield return s.Say(["{hero} smiled. [Sometimes a rainy day is fun too.|{he} could go to {place} tomorrow.|It had been a good day after all.]"]);
    }

    static IEnumerable<string> LostThing(Scene s)
    {
        var (thing, plural) = s.Random.One(LostThings);
        var spots = s.Random.Distinct(HidingSpots, 3);
        s["thing"] = thing;
        s["it"] = plural ? "them" : "it";
        s["itnom"] = plural ? "they" : "it";
        s["was"] = plural ? "were" : "was";
        s["is"] = plural ? "are" : "is";
        s["spot1"] = spots[0]; s["spot2"] = spots[1]; s["spot3"] = spots[2];
        yield return s.Say(["One morning, {hero} could not find {his} {thing}.", "{hero}'s {thing} {was} missing.", "\"Where {is} my {thing}?\" asked {hero}."]);
        yield return s.Say(["{he} looked {spot1}, but {itnom} {was} not there.", "{he} searched {spot1} and {spot2}, but there was no sign of {it}."]);
        yield return s.Say(["{he} asked {his} {rel}, but {rhe} had not seen {it} either.", "{his} {rel} helped {him} look, but they could not find {it}.", ""]);
        yield return s.Say(["Then {pet} the {petkind} [ran|came trotting] into the room with something in its mouth.",
                            "Then {friend} came round and said, \"Did you look {spot3}?\"", "Then {hero} remembered where {he} had been the day before."]);
        yield return s.Say(["There {was} the {thing}, {spot3}!", "{hero} found {it} {spot3}.", "It was {his} {thing}!"]);
        yield return s.Say(["{hero} was so {good} to have {his} {thing} back.", "{hero} laughed with relief."]);
        yield return s.Say(["[From then on|After that], {hero} always put {his} {thing} by the door [before bed|when {he} came home].", ""]);
    }

    static IEnumerable<string> Cooking(Scene s)
    {
        var dish = s.Random.One(Dishes);
        var (_, _, acting) = s.Random.One(Activities);
        s["dish"] = dish.Name;
        s["acting"] = acting;
        s["ingredients"] = JoinList(dish.Ingredients);
        s["step1"] = dish.Steps[0];
        s["step2"] = dish.Steps[1];
        s["step3"] = dish.Steps[^1];
        s["meal"] = s.Random.One(Meals);
        yield return s.Say(["{hero} was very hungry after {acting} all morning.", "{hero} came home from {place} feeling hungry."]);
        yield return s.Say(["\"What shall we make for {meal}?\" asked {his} {rel}.", "{his} {rel} asked what {he} wanted for {meal}."]);
        yield return s.Say(["\"Can we make {dish}?\" said {hero}.", "{hero} asked if they could make {dish}."]);
        yield return s.Say(["They needed {ingredients}.", "First they put out {ingredients}."]);
        yield return s.Say(["{his} {rel} showed {him} how to {step1}.", "{hero} helped to {step1}."]);
        yield return s.Say(["Next, they had to {step2}.", "Then {hero} was allowed to {step2}."]);
        yield return s.Say(["At the end, they [had to|needed to] {step3}.", "Last of all, {his} {rel} said it was time to {step3}."]);
        yield return s.Say(["Soon the kitchen smelled [wonderful|delicious|of {dish}].", "When the {dish} was ready, they sat down at the [kitchen |]table[ with {friend}|]."]);
        yield return s.Say(["The {dish} [was delicious|tasted wonderful], and {hero} [ate every bit|asked for more]."]);
    }

    static readonly (string Animal, string Problem, string Help, string Ending)[] Foundlings =
    [
        ("baby bird", "had fallen out of its nest", "put it in a box with a soft cloth", "Later they put it back in the nest, and its mother came back to feed it."),
        ("kitten", "was lost and crying", "gave it a saucer of milk", "The next day, a woman from the next street came looking for her kitten, and she was very grateful."),
        ("hedgehog", "was stuck in a fence", "gently freed it and gave it some water", "When it was dark, they let it go under the hedge, and it snuffled away."),
        ("duckling", "had lost its mother", "carried it carefully to the pond", "Soon they saw the mother duck, and the duckling swam straight to her."),
        ("puppy", "was shivering in the rain", "dried it with a towel", "The puppy's name was on its collar, and they took it back to its family that evening."),
        ("young rabbit", "had hurt its leg", "took it to the vet", "The vet said it would be fine after a few days of rest."),
    ];

    static IEnumerable<string> FoundAnimal(Scene s)
    {
        var (animal, problem, help, ending) = s.Random.One(Foundlings);
        s["animal"] = animal; s["problem"] = problem; s["help"] = help;
        yield return s.Say(["On the way to {place}, {hero} heard a [small|tiny|soft] noise [under a bush|in the long grass|behind a wall].",
                            "{hero} and {friend} were walking by {place} when they saw something move."]);
        yield return s.Say(["It was a {animal} that {problem}.", "When {he} looked closer, {he} saw a {animal}. It {problem}."]);
        yield return s.Say(["{hero} [called|ran to get] {his} {rel}, and together they {help}.", "{hero} knew what to do. {he} {help}."]);
        yield return ending;
        yield return s.Say(["{hero} felt {good} because {he} had helped.", "{hero} was glad {he} had stopped to look.", ""]);
    }

    static IEnumerable<string> NewFriend(Scene s)
    {
        s["liked"] = s.Random.One(["drawing dragons", "football", "old maps", "space", "animals", "funny jokes", "building things", "music"]);
        yield return s.Say(["It was {hero}'s first day at a new school in {town}.", "{hero}'s family had just moved to {town}."]);
        s["feel"] = s.Random.One(["nervous", "shy", "lonely", "worried"]);
        yield return s.Say(["{he} did not know anyone, and {he} felt {feel}.", "Everything was new, and {hero} felt {feel}."]);
        yield return s.Say(["At lunch, {he} sat alone [under a tree|at the end of a long table|on a bench by the fence]."]);
        yield return s.Say(["Then a {fchild} called {friend} came over and [asked if {fhe} could sit there|offered {him} some {food}|asked {him} to play]."]);
        yield return s.Say(["They [talked|chatted] for a long time and found out that they both loved {liked}.", "{friend} loved {liked}, and so did {hero}."]);
        yield return s.Say(["By the end of the week, {hero} and {friend} were best friends.", "After that, {hero} was not {feel} anymore.",
                            "From that day on, {hero} and {friend} sat together every lunchtime."]);
    }

    static IEnumerable<string> BrokenThing(Scene s)
    {
        var (noun, cause, fix) = s.Random.One(BrokenThings);
        s["thing"] = noun; s["cause"] = cause; s["fix"] = fix;
        yield return s.Say(["One {weekday}, {hero}'s {thing} stopped working.", "{hero}'s {thing} was broken."]);
        yield return s.Say(["{he} looked closely and saw that {cause}.", "{his} {rel} had a look and found that {cause}."]);
        yield return s.Say(["{hero} felt {bad}. [{he} had wanted to use it that {daypart}.|It was {his} favourite {thing}.|{he} had had it since {he} was [five|six|seven].]"]);
        yield return s.Say(["{his} {rel} said, \"Don't worry, we can fix it.\"", "\"Let's fix it together,\" said {his} {rel}."]);
        yield return s.Say(["Together they {fix}.", "{hero} held the tools while {his} {rel} {fix}."]);
        yield return s.Say(["Soon the {thing} was as good as new, and {hero} [thanked {his} {rel}|gave {rhim} a big hug]."]);
    }

    static IEnumerable<string> DayOut(Scene s)
    {
        var trip = s.Random.NextInt(4);
        s["dest"] = trip switch { 0 => "the zoo", 1 => "the beach", 2 => "a farm", _ => "the forest" };
        yield return s.Say(["On {weekday}, {hero} and {his} {rel} went to {dest}.", "[In|Last] {season}, {hero}'s family spent a day at {dest}."]);
        var animals = s.Random.Distinct(Animals, 3);
        if (trip == 0)
        {
            s["a1"] = animals[0].Plural; s["a2"] = animals[1].Plural; s["a3"] = animals[2].Plural;
            s["fav"] = animals[0].Name; s["can"] = animals[0].Can;
            yield return s.Say(["They saw {a1}, {a2} and {a3}.", "First they visited the {a1}, and then the {a2}."]);
            yield return s.Say(["{hero}'s favourite animal was the {fav}, because it can {can}.", "The {fav} was the best, because it can {can}."]);
        }
        else if (trip == 1)
        {
            yield return s.Say(["They [built a sandcastle|looked for shells|paddled in the sea|flew a kite on the sand].",
                                "The sea was [cold|calm|full of waves], and {hero} [jumped over the waves|collected smooth stones]."]);
            yield return s.Say(["A seagull tried to steal their [sandwiches|chips], which made everyone laugh.", "They saw a seal on the rocks.", ""]);
        }
        else if (trip == 2)
        {
            var farm = Animals.Where(a => a.Name is "cow" or "horse" or "sheep" or "goat" or "duck" or "goose").ToArray();
            var a = s.Random.One(farm);
            s["farmanimal"] = a.Plural; s["eats"] = a.Eats[0]; s["baby"] = a.Baby;
            yield return s.Say(["The farmer showed them the {farmanimal}, which were eating {eats}.", "They helped to feed the {farmanimal}."]);
            yield return s.Say(["{hero} held a {baby}, which was very soft.", "They collected eggs from the hens.", ""]);
        }
        else
        {
            var forest = Animals.Where(a => a.Name is "fox" or "owl" or "squirrel" or "deer" or "badger" or "hedgehog").ToArray();
            s["wild"] = s.Random.One(forest).Name;
            yield return s.Say(["They walked under tall trees and saw a {wild} [running across the path|hiding behind a log].",
                                "In the forest it was quiet, and they heard a {wild} moving in the leaves."]);
            yield return s.Say(["They [picked|found] [blackberries|pine cones|mushrooms, but did not eat them]."]);
        }
        if (s.Random.Chance(0.7)) yield return Clause(s, "they", "they", "their", time: false);
        yield return s.Say(["For lunch they ate {food} and {food} [on a bench|on a blanket|by the water].", "[At lunchtime|At noon|Around one o'clock|When they got hungry], they had a picnic [{outdoor}|under a tree|on the grass]."]);
        int hour = s.Random.Between(4, 7);
        s["home"] = s.Clock(hour, s.Random.One(new[] { 0, 30 }));
        yield return s.Say(["They [went|drove] home at {home}, tired but {good}.", "When they got home at {home}, {hero} was very tired."]);
    }

    static IEnumerable<string> Practice(Scene s)
    {
        var skill = s.Random.NextInt(4);
        s["instrument"] = s.Random.One(Instruments);
        (s["skill"], s["triumph"]) = skill switch
        {
            0 => ("play {instrument}", "played a whole song without a mistake"),
            1 => ("swim", "swam across the pool without stopping"),
            2 => ("ride a bike", "rode all the way around the park"),
            _ => ("juggle", "juggled three balls for a whole minute"),
        };
        s["skill"] = s.Fill(s["skill"]);
        s["weeks"] = NumberWord(s.Random.Between(2, 8));
        yield return s.Say(["{hero} wanted to learn to {skill}.", "{hero} had always wanted to {skill}."]);
        yield return s.Say(["At first it was hard, and {he} [kept making mistakes|fell over many times|felt like giving up]."]);
        yield return s.Say(["But {he} practised every day [after school|before breakfast] for {weeks} weeks.", "Still, {he} kept trying, [day after day|even when it rained|every {daypart}]."]);
        yield return s.Say(["{his} {rel} [helped {him}|cheered {him} on|gave {him} good tips].", ""]);
        yield return s.Say(["At the end of the [term|summer|month], {hero} {triumph}."]);
        yield return s.Say(["Everyone clapped, and {hero} felt very proud.", "{hero} was proud, because all the practice had been worth it."]);
    }

    static IEnumerable<string> LateForSchool(Scene s)
    {
        int minute = s.Random.One(new[] { 15, 30, 45 });
        s["late"] = s.Clock(8, minute);
        s["minutes"] = NumberWord(s.Random.Between(5, 25));
        s["teacher"] = s.Random.One(["Mr", "Mrs", "Ms"]) + " " + s.Random.One(["Green", "Brown", "Hill", "Wood", "Shaw", "Price", "Lane", "Moss"]);
        yield return s.Say(["{hero}'s alarm did not ring on {weekday} morning.", "On {weekday}, {hero} forgot to set {his} alarm."]);
        yield return s.Say(["{he} woke up at {late} and jumped out of bed."]);
        yield return s.Say(["{he} [got dressed quickly|forgot to brush {his} hair|had no time for breakfast] and ran to the bus stop."]);
        yield return s.Say(["But the [bus|number {n} bus|school bus] had already gone.", "The [bus|school bus] was just pulling away as {he} got there[, and the driver did not see {him}|]."]);
        yield return s.Say(["So {he} [walked|ran|rode {his} bike] to school.", "So {he} had to walk all the way to school."]);
        yield return s.Say(["{he} was {minutes} minutes late, but {teacher} [smiled and said it was all right|asked {him} to sit down quietly]."]);
        yield return s.Say(["That night, {hero} set two alarms.", "Since then, {hero} has never forgotten to set {his} alarm."]);
    }

    static IEnumerable<string> Garden(Scene s)
    {
        var (veg, vegs) = s.Random.One(new[] { ("carrot", "carrots"), ("bean", "beans"), ("sunflower", "sunflowers"), ("tomato", "tomatoes"),
                                               ("pea", "peas"), ("pumpkin", "pumpkins"), ("lettuce", "lettuces"), ("radish", "radishes"), ("strawberry", "strawberries") });
        s["veg"] = veg; s["vegs"] = vegs;
        s["weeks"] = NumberWord(s.Random.Between(2, 5));
        s["summer"] = s.Random.One(["June", "July", "August"]);
        yield return s.Say(["In spring, {hero} and {his} {rel} planted {veg} seeds in the garden.", "One spring morning, {hero} planted a row of {veg} seeds."]);
        yield return s.Say(["Every {daypart}, {hero} watered them [with a small green can|very carefully].", "{he} watered the seeds every [day|morning|evening] and pulled out the weeds[ with {his} {rel}|]."]);
        yield return s.Say(["After {weeks} weeks, tiny green shoots [appeared|came up]."]);
        yield return s.Say(["By {summer}, the plants were [tall|strong|taller than {hero}].", "By {summer}, there were lots of {vegs}."]);
        yield return s.Say(["Because {hero} had looked after them every day, they grew well.", ""]);
        yield return s.Say(["They picked [a basket of|lots of] {vegs} and gave some to [the neighbours|{his} grandma|their friends]."]);
    }

    static IEnumerable<string> SnowDay(Scene s)
    {
        yield return s.Say(["When {hero} woke up on {weekday}, everything was white. It had snowed all night[ in {town}|].", "It snowed all night, and in the morning {hero}'s [garden|street|whole town] was white."]);
        yield return s.Say(["{he} put on {his} [boots|wellies], {his} [{color} |warm |thick |]coat and {his} [gloves|mittens] and [ran|rushed|hurried] outside[ to find {friend}|]."]);
        yield return s.Say(["{he} and {friend} built a snowman with [a carrot for a nose|stones for eyes|a long {color} scarf]."]);
        yield return s.Say(["They [threw snowballs|went sledging down the hill|made angels in the snow|built a snow fort] [until their hands were cold|for {nword} hours|all {daypart}]."]);
        yield return s.Say(["Then they went inside and drank [hot chocolate|warm milk|sweet tea] by the fire.", "Then {his} {rel} called them in for [hot soup|pancakes|warm bread]."]);
    }

    static IEnumerable<string> Birthday(Scene s)
    {
        int age = s.Random.Between(5, 12);
        s["age"] = NumberWord(age);
        s["present"] = s.Random.One(Presents);
        s["guests"] = NumberWord(s.Random.Between(4, 15));
        yield return s.Say(["It was {friend}'s birthday on {weekday}. {fhe} was turning {age}.", "{friend} was going to be {age} on {weekday}."]);
        yield return s.Say(["{hero} wanted to give {fhim} something special, so {he} made {present}.", "{hero} saved up and bought {present} for {fhim}."]);
        yield return s.Say(["At the party there were {guests} children and a big cake with {age} candles."]);
        yield return s.Say(["They played [musical chairs|hide and seek|musical statues] and [danced|sang songs]."]);
        yield return s.Say(["When {friend} opened the present, {fhe} [smiled|laughed|gave {hero} a hug]. \"[I love it|Thank you, {hero}|It's perfect]!\" {fhe} said."]);
    }

    // ---- facts, reports, everyday texts -------------------------------------------------------------------------

    static string AnimalFacts(Scene s)
    {
        var a = s.Random.One(Animals);
        var other = s.Random.One(Animals.Where(o => o.Size != a.Size).ToArray());
        s["a"] = a.Name; s["as"] = a.Plural; s["kind"] = a.Kind; s["home"] = a.Home; s["size"] = SizeWords[a.Size];
        s["eats"] = JoinList(a.Eats); s["color"] = a.Color; s["can"] = a.Can; s["baby"] = a.Baby; s["sound"] = a.Sound;
        s["babies"] = a.Baby switch { "calf" => "calves", "larva" => "larvae", _ => a.Baby + "s" };
        s["b"] = other.Name; s["bs"] = other.Plural;
        s["cmp"] = a.Size > other.Size ? "bigger" : "smaller";
        var facts = new List<string>
        {
            s.Say(["The {a} is a {size} {kind}.", "A {a} is a {size} {kind}.", "{as} are {size} {kind}s."]),
            s.Say(["{as} live in {home}.", "The {a} makes its home in {home}.", "You can find {as} in {home}."]),
            s.Say(["{as} eat {eats}.", "The {a} eats {eats}.", "A {a} likes to eat {eats}."]),
            s.Say(["Most {as} are {color}.", "The {a} is usually {color}."]),
            s.Say(["A {a} can {can}.", "Did you know that a {a} can {can}?", "One amazing thing about the {a} is that it can {can}."]),
            s.Say(["A baby {a} is called a {baby}.", "Young {as} are called {babies}."]),
            s.Say(["The {a} {sound}.", "When it talks to other {as}, a {a} {sound}."]),
            s.Say(["A {a} is {cmp} than a {b}.", "{as} are {cmp} than {bs}."]),
        };
        int keep = s.Random.Between(4, facts.Count);
        var chosen = s.Random.Distinct(facts, keep);
        string title = s.Say(["{as}", "All about {as}", "The {a}", "Facts about {as}"]);
        return title + "\n" + Sentences(chosen);
    }

    static string WeatherReport(Scene s)
    {
        s["town"] = s.Random.One(Towns);
        int start = s.Random.NextInt(7);
        int days = s.Random.Between(1, 3);
        int month = s.Random.NextInt(12);
        s["monthname"] = Months[month];
        var lines = new List<string>
        {
            s.Say(["Here is the weather for {town}.", "[Good morning.|Good evening.] This is the weather forecast for {town} and the area around it.",
                   "Weather for {town} [for the next few days|this week]."]),
        };
        bool winterMonth = month is 11 or 0 or 1;
        bool summerMonth = month is 5 or 6 or 7;
        var possible = WeatherKinds.Where(w => winterMonth ? w.High <= 22 : summerMonth ? w.Low >= 0 : true).ToArray();
        for (int d = 0; d < days; d++)
        {
            var w = s.Random.One(possible);
            int high = s.Random.Between(Math.Max(w.Low + 2, winterMonth ? w.Low : w.Low + 4), w.High);
            int low = high - s.Random.Between(3, 9);
            s["day"] = Weekdays[(start + d) % 7];
            s["w"] = w.Name; s["sky"] = w.Sky; s["bring"] = w.Bring;
            s["high"] = Temperature(high); s["low"] = Temperature(low);
            s["region"] = s.Random.One(Regions);
            lines.Add(s.Say([
                "On {day} it will be {w}[ in {region}| across the area| in {town}|], with {sky} and a high of {high}.",
                "{day} will be {w}. Expect {sky}[ in the morning| for most of the day| in {region}|], and temperatures up to {high}.",
                "For {day}, we expect {sky}[ over {town}| in {region}|]. The temperature will reach {high}[ in the afternoon| by midday| near the coast|].",
            ]));
            lines.Add(s.Say([
                "At night it will fall to {low}[ in {region}| in town|].", "Overnight the temperature [in {town}|] will drop to {low}.", "{day} night will be [cooler|colder], with a low of {low}.",
                "In {region} it may be a little [colder|windier] than that.",
            ]));
            if (s.Random.Chance(0.6)) lines.Add(s.Say(["If you go out on {day}, take {bring}.", "Don't forget {bring}[ on {day}| if you go to {place}|]!", "{day} is a good day to take {bring}."]));
        }
        s["clock"] = ClockWords(s.Random.Between(1, 12), 0);
        lines.Add(s.Say(["", "That was the weather for {town}[ on {day}|]. Have a [good|lovely|nice] {daypart}!", "We will be back with more weather at {clock}."]));
        return Sentences(lines);
    }

    static string Temperature(int t) => t switch
    {
        0 => "zero degrees",
        1 => "one degree",
        -1 => "minus one degree",
        < 0 => $"minus {NumberWord(-t)} degrees",
        _ => $"{NumberWord(t)} degrees",
    };

    static string Diary(Scene s)
    {
        int dayIndex = s.Random.NextInt(7);
        int month = s.Random.NextInt(12);
        int dayOfMonth = s.Random.Between(1, 28);
        s["day"] = Weekdays[dayIndex];
        s["next"] = Weekdays[(dayIndex + 1) % 7];
        s["date"] = $"{dayOfMonth} {Months[month]}";
        s.CastPerson("friend");
        s.CastRelative();
        s["pet"] = s.Random.One(PetNames);
        var w = s.Random.One(WeatherKinds);
        s["w"] = w.Name;
        s["wake"] = s.Clock(s.Random.Between(6, 9), s.Random.One(new[] { 0, 15, 30, 45 }));
        s["bed"] = s.Clock(s.Random.Between(8, 10), s.Random.One(new[] { 0, 30 }));
        var (_, actPast, _) = s.Random.One(Activities);
        var (_, indoorPast, _) = s.Random.One(IndoorActivities);
        s["actpast"] = actPast; s["indoorpast"] = indoorPast;
        s["dish"] = s.Random.One(Dishes.Where(d => d.Name != "lemonade").ToArray()).Name;
        bool weekend = dayIndex >= 5;
        bool wet = w.Name is "rainy" or "stormy" or "drizzly" or "snowy";
        var lines = new List<string>
        {
            s.Say(["{day} {date}", "{day}, {date}", "Dear diary,"]),
            s.Say(["Today I woke up at {wake}[ and stayed in bed for a while| and looked out of the window| and got dressed quickly|].", "I got up at {wake} this morning[ because {friend} was coming round| because my {rel} called me|].",
                   "This morning I woke up at {wake}[ because the birds were singing| and it was still dark| because {pet} jumped on my bed|]."]),
            s.Say(["For breakfast I had {breakfast} and some {drink}[ in the kitchen| with my {rel}| by the window|].", "I had {breakfast} for breakfast[, and my {rel} had {breakfast}|]."]),
            wet ? s.Say(["It was {w} outside, so I [stayed inside|put on my boots|took an umbrella].", "The weather was {w}, so we {indoorpast} at home."])
                : s.Say(["It was {w} outside, so [we went to {place}|I played in the garden|I walked to {place}].", "The weather was {w}, and I {actpast} with {friend}."]),
            weekend ? s.Say(["In the afternoon I {actpast} with {friend}.", "After lunch my {rel} and I {indoorpast}.", "We visited my {rel} in {town}."])
                    : s.Say(["At school we learned about {subject}.", "In {subject} we [did a test|made posters|worked in pairs], and it was [fun|hard|easy].",
                             "At break time I played with {friend}."]),
            s.Say(["For dinner my {rel} made {dish}[ and I helped|, and {friend} stayed to eat with us|].", "We had {dinner} for dinner[ with {friend}|].", "In the evening we ate {dish}, which [was my favourite|I had never tried before|my {rel} loves]."]),
            s.Say(["I went to bed at {bed}[ and read about {animals}| after a warm bath| and fell asleep at once|].", "I was in bed by {bed}[, but I could not sleep| and dreamed about {place}|]."]),
            s.Say(["Tomorrow is {next}[, and I can't wait|]. ", "I hope tomorrow will be [as good|better].", "It was a {dayadj} day.", ""]),
        };
        int extra = s.Random.Between(1, 3);
        for (int i = 0; i < extra; i++) lines.Insert(4 + i, Clause(s, "I", "I", "my"));
        return lines[0] + "\n" + Sentences(lines.Skip(1));
    }

    static string Dialogue(Scene s)
    {
        var a = s.CastPerson("a");
        s.CastPerson("b", a);
        s.CastRelative();
        var topic = s.Random.NextInt(12);
        var turns = new List<(bool A, string Line)>();
        void A(params string[] t) => turns.Add((true, s.Say(t)));
        void B(params string[] t) => turns.Add((false, s.Say(t)));
        switch (topic)
        {
            case 0:
            {
                var (act, _, _) = s.Random.One(Activities);
                s["act"] = act; s["place"] = s.Random.One(Places); s["day"] = s.Random.One(Weekdays);
                A("What are you doing on {day}?", "Are you busy on {day}?", "Have you got any plans for {day}?");
                B("I'm going to {place} with my {rel}. We want to {act}.", "My {rel} is taking me to {place} to {act}.");
                A("That sounds [fun|great|lovely]. Can I come too?", "Oh, I love {place}! Can I come with you?");
                bool yes = s.Random.Chance(0.6);
                s["leave"] = s.Clock(s.Random.Between(8, 11), s.Random.One(new[] { 0, 30 }));
                if (yes) { B("Of course! We are leaving at {leave}.", "Yes! Meet us at my house at {leave}."); A("Great, see you then!", "Perfect. I'll bring some {food}."); }
                else { B("Sorry, there isn't room in the car this time.", "I'm sorry, not this time. Maybe next week?"); A("Never mind. Have fun!", "That's all right. Tell me about it later."); }
                break;
            }
            case 1:
            {
                var w = s.Random.One(WeatherKinds);
                s["w"] = w.Name; s["bring"] = w.Bring; s["sky"] = w.Sky;
                bool cold = w.High <= 10;
                A("Is it cold outside?", "What's the weather like today?", "Do I need a coat today?");
                if (cold) B("Yes, it's {w} and very cold. Take {bring}.", "It's freezing! There is {sky}, so you'll need {bring}.");
                else B("Not really. It's {w}, but you might want {bring}.", "It's {w} today. There is {sky}, so take {bring}.");
                A("Thanks. [I'll get it now.|Good idea.|I almost forgot.]");
                break;
            }
            case 2:
            {
                var fruit = s.Random.One(["apples", "pears", "oranges", "lemons", "peaches", "plums", "bananas"]);
                int price = s.Random.Between(10, 60);
                int count = s.Random.Between(2, 9);
                s["fruit"] = fruit; s["price"] = NumberWord(price); s["count"] = NumberWord(count); s["sum"] = NumberWord(price * count);
                s["unit"] = s.Random.One(["cents", "pence"]);
                if (s.Random.Chance(0.35))
                {
                    // Prices in figures too ("£0.45 each … £1.80"), so currency signs and decimals are not new to a model at fine-tuning.
                    string sign = s.Random.One(["£", "$", "€"]);
                    s["price"] = sign + (price / 100m).ToString("0.00", System.Globalization.CultureInfo.InvariantCulture);
                    s["sum"] = sign + (price * count / 100m).ToString("0.00", System.Globalization.CultureInfo.InvariantCulture);
                    s["unit"] = "";
                }
                A("Good morning! How much are the {fruit}?", "Excuse me, how much do the {fruit} cost?");
                B("They are {price} {unit} each.", "{price} {unit} each. They are very fresh today.");
                A("I'll take {count}, please.", "Then I would like {count}, please.");
                B("{count} {fruit} at {price} {unit} each. That's {sum} {unit}, please.", "That makes {sum} {unit} altogether.");
                A("Here you are. Thank you!");
                B("Thank you. Have a nice day!", "Thanks, enjoy your {fruit}!");
                break;
            }
            case 3:
            {
                var places = s.Random.Distinct(Places, 2);
                s["p1"] = places[0]; s["p2"] = places[1]; s["side"] = s.Random.One(["left", "right"]);
                s["mins"] = NumberWord(s.Random.Between(2, 20));
                s["landmark"] = s.Random.One(["the church", "the traffic lights", "the big oak tree", "the post box", "the fountain", "the bakery"]);
                A("Excuse me, where is {p1}?", "Excuse me, can you tell me the way to {p1}?");
                B("Go straight on, then turn {side} at {landmark}. It's next to {p2}.", "Turn {side} at {landmark}, and you will see it next to {p2}.");
                A("Is it far?", "How long does it take to walk there?");
                B("No, it's about {mins} minutes on foot.", "Not far. About {mins} minutes if you walk.");
                A("Thank you very much!", "Thanks for your help.");
                break;
            }
            case 4:
            {
                int x = s.Random.Between(2, 12), y = s.Random.Between(2, 12);
                s["subject"] = "maths"; s["x"] = NumberWord(x); s["y"] = NumberWord(y); s["xy"] = NumberWord(x * y);
                s["q"] = NumberWord(s.Random.Between(3, 10));
                A("Have you finished your maths homework?", "Did you do the maths homework?");
                B("Not yet. Question {q} is hard.", "Almost. I'm stuck on question {q}.");
                A("What is the question?");
                B("What is {x} times {y}?");
                A("That's {xy}. [I learned it last week.|I checked it twice.]", "It's {xy}.");
                B("Thanks! [Now I can finish.|You're good at this.]");
                break;
            }
            case 5:
            {
                s["pet"] = s.Random.One(PetNames); s["petkind"] = s.Random.One(PetKinds); s["color"] = s.Random.One(Colors); s["place"] = s.Random.One(Places);
                A("Have you seen my {petkind}? It's called {pet}.", "I can't find {pet}, my {petkind}. Have you seen it?");
                bool seen = s.Random.Chance(0.6);
                if (seen) { B("Yes! I saw a {petkind} near {place} a few minutes ago.", "I think so. There was a {petkind} by {place}."); A("Oh, thank you! I'll go and look right now."); }
                else { B("No, sorry. But I'll keep an eye out.", "I haven't, but I can help you look."); A("Thank you. [It's never gone this far before.|I'm really worried.]"); }
                break;
            }
            case 6:
            {
                int hour = s.Random.Between(2, 8);
                bool half = s.Random.Chance(0.5);
                s["event"] = s.Random.One(["the film", "the match", "the concert", "the play", "the train"]);
                s["start"] = ClockWords(hour, half ? 30 : 0);
                s["leave"] = ClockWords(half ? hour : hour - 1, half ? 0 : 30);
                A("What time does {event} start?", "When does {event} begin?");
                B("At {start}.", "It starts at {start}.");
                A("Then we should leave at {leave}. It takes half an hour to get there.", "So we need to leave at {leave}, because it takes half an hour.");
                B("[Good idea.|OK, I'll be ready.|Let's not be late!]");
                break;
            }
            case 8:
            case 9:
            case 10:
            case 11:
            {
                s["when"] = s.Random.One(["yesterday", "at the weekend", "on " + s.Random.One(Weekdays), "after school", "last night"]);
                A("What did you do {when}?", "Did you do anything fun {when}?", "How was your day {when}?");
                string first = Clause(s, "I", "I", "my", time: false);
                if (s.Random.Chance(0.5)) first += " Then " + Clause(s, "I", "I", "my", time: false);
                turns.Add((false, first));
                A("[That sounds fun!|Really? I've never done that.|Lucky you!|What a nice idea.]", "I did that once too!");
                B("What about you?", "And what did you do?");
                turns.Add((true, Clause(s, "I", "I", "my", time: false)));
                break;
            }
            default:
            {
                bool good = s.Random.Chance(0.6);
                s["feel"] = good ? s.Random.One(GoodFeelings) : s.Random.One(BadFeelings);
                s["because"] = good
                    ? s.Random.One(["my cousin is coming to stay", "I got a good mark in {subject}", "it's the weekend tomorrow", "I learned to swim", "we are going to {place}"])
                    : s.Random.One(["I lost my {thing}", "my {rel} is ill", "it's raining again", "I have a test tomorrow", "I didn't sleep well"]);
                s["thing"] = s.Random.One(LostThings).Noun;
                s["because"] = s.Fill(s["because"]);
                A("Hi {b}! How are you?", "Hello {b}, how are you today?");
                B("I'm {feel}, because {because}.", "I feel {feel} today. {because}.");
                A(good ? "That's wonderful! I'm happy for you." : "Oh no, I'm sorry. [Can I help?|I hope things get better soon.]");
                B("Thanks, {a}. [How about you?|You're a good friend.]");
                break;
            }
        }
        bool script = s.Random.Chance(0.5);
        var text = new StringBuilder();
        for (int i = 0; i < turns.Count; i++)
        {
            var (isA, line) = turns[i];
            string speaker = s[isA ? "a" : "b"];
            if (script) text.Append(speaker).Append(": ").Append(line);
            else
            {
                bool question = line.EndsWith('?');
                string verb = question ? s.Random.One(["asked", "asked", "wondered"]) : s.Random.One(["said", "said", "replied", "answered"]);
                if (i == 0) verb = question ? "asked" : "said";
                // "Hello," said Anna. — the closing full stop of the spoken sentence becomes a comma.
                string spoken = line.EndsWith('.') ? line[..^1] + "," : line;
                text.Append('"').Append(spoken).Append("\" ").Append(verb).Append(' ').Append(speaker).Append('.');
            }
            if (i + 1 < turns.Count) text.Append('\n');
        }
        return text.ToString();
    }

    static string Lesson(Scene s)
    {
        s.CastPerson("hero");
        var lines = new List<string> { s.Say(["[Today|On {weekday}|This week] in [class|{subject}|our lesson] we learned some [new|interesting|useful] things.", "Here are some things that {hero} learned this week.", "Things to remember:"]) };
        int count = s.Random.Between(3, 6);
        for (int i = 0; i < count; i++)
        {
            int kind = s.Random.NextInt(6);
            if (kind <= 1)
            {
                s["fact"] = s.Random.One(Facts);
                lines.Add(s.Say(["Our teacher told us that {fact}.", "Did you know that {fact}?", "{hero} knows that {fact}.", "It is true that {fact}.", "We learned that {fact}."]));
            }
            else if (kind == 2)
            {
                int x = s.Random.Between(1, 20), y = s.Random.Between(1, 20);
                s["x"] = NumberWord(x); s["y"] = NumberWord(y); s["sum"] = NumberWord(x + y);
                s["things"] = s.Random.One(["apples", "marbles", "pencils", "shells", "stickers", "books", "stones"]);
                s.CastPerson("friend");
                lines.Add(s.Say(["{x} plus {y} is {sum}.", "If you have {x} {things} and you get {y} more, you have {sum} {things}.",
                                 "{friend} had {x} {things}. Then {fhe} found {y} more. Now {fhe} has {sum}."]));
            }
            else if (kind == 3)
            {
                int x = s.Random.Between(5, 20), y = s.Random.Between(1, x);
                s["x"] = NumberWord(x); s["y"] = NumberWord(y); s["rest"] = NumberWord(x - y);
                s["things"] = s.Random.One(["cookies", "birds", "balloons", "cherries", "grapes", "boats"]);
                lines.Add(s.Say(["{x} take away {y} leaves {rest}.", "There were {x} {things}, and {y} went away. Now there are {rest} {things} left.",
                                 "If you have {x} {things} and give away {y}, you have {rest} left."]));
            }
            else if (kind == 4)
            {
                int d = s.Random.NextInt(7);
                s["d1"] = Weekdays[d]; s["d2"] = Weekdays[(d + 1) % 7]; s["d0"] = Weekdays[(d + 6) % 7];
                lines.Add(s.Say(["The day after {d1} is {d2}.", "The day before {d1} is {d0}.", "After {d1} comes {d2}."]));
            }
            else
            {
                int m = s.Random.NextInt(12);
                s["m"] = Months[m]; s["ord"] = Ordinals[m]; s["mnext"] = Months[(m + 1) % 12];
                s["mseason"] = m switch { 11 or 0 or 1 => "winter", 2 or 3 or 4 => "spring", 5 or 6 or 7 => "summer", _ => "autumn" };
                lines.Add(s.Say(["{m} is the {ord} month of the year.", "After {m} comes {mnext}.", "{m} is in {mseason}."]));
            }
        }
        return lines[0] + "\n" + Sentences(lines.Skip(1));
    }

    static string Journey(Scene s)
    {
        s.CastPerson("hero");
        s.CastRelative();
        var towns = s.Random.Distinct(Towns, 2);
        s["from"] = towns[0]; s["to"] = towns[1];
        string vehicle = s.Random.One(Vehicles);
        s["vehicle"] = vehicle;
        int hours = vehicle == "plane" ? 1 : s.Random.Between(1, 5);
        int startHour = s.Random.Between(6, 11);
        s["hours"] = hours == 1 ? "one hour" : $"{NumberWord(hours)} hours";
        s["leave"] = ClockWords(startHour, 0);
        s["arrive"] = ClockWords(startHour + hours > 12 ? startHour + hours - 12 : startHour + hours, 0);
        s["nights"] = NumberWord(s.Random.Between(2, 7));
        s["sight1"] = s.Random.One(Sights);
        var lines = new List<string>
        {
            s.Say(["[Last|This] {season}, {hero} and {his} {rel} travelled from {from} to {to} by {vehicle}.", "{hero} went to {to} with {his} {rel}. They took the {vehicle} from {from}."]),
            s.Say(["They left [{from}|home] at {leave} and arrived [in {to}|] at {arrive}, so the journey took {hours}.", "The journey [to {to}|] took {hours}. The {vehicle} left at {leave} and got there at {arrive}."]),
            s.Say(["On the way, they saw {sight1}.", "Out of the window, {hero} could see {sight1}.", "{hero} read a book and looked at {sight}."]),
            s.Say(["In {to}, they visited {place} and ate {food}.", "The first thing they did in {to} was walk to {place}.", "They stayed with friends who live near {place}."]),
            Clause(s, s.Random.Chance(0.5) ? s["hero"] : s["he"], s["he"], s["his"], time: false),
            s.Say(["The weather in {to} was [sunny|rainy|cold|warm|windy] most of the time.", "It rained on the second day, so they went to {place}[ instead|]."]),
            s.Say(["After {nights} nights[ in {to}|], they went back home to {from}[ by {vehicle}|].", "They stayed [with {name}'s family|in a small hotel|in a tent] for {nights} nights before going back to {from}."]),
            s.Say(["{hero} [wants to go back|hopes to visit again] next year.", "It was the best trip {hero} had ever had.", ""]),
        };
        return Sentences(lines);
    }

    static string JobProfile(Scene s)
    {
        var job = s.Random.One(Jobs);
        s.CastPerson("hero");
        s["job"] = job.Name; s["where"] = job.Where; s["tool"] = job.Tool; s["start"] = job.Start;
        var does = s.Random.Distinct(job.Does, 2);
        s["does1"] = does[0]; s["does2"] = does[1];
        s["years"] = NumberWord(s.Random.Between(2, 30));
        var lines = new List<string>
        {
            s.Say(["{hero} is a {job}.", "{hero} works as a {job} in {town}.", "Meet {hero}. {he} is a {job}."]),
            s.Say(["{he} works at {where}.", "Every day {he} goes to {where}."]),
            s.Say(["A {job} {does1}.", "{he} {does1}.", "Most days {he} {does1}."]),
            s.Say(["{he} also {does2}.", "Sometimes {he} {does2} too."]),
            s.Say(["{he} starts work {start}.", "{his} day begins {start}."]),
            s.Say(["The most important thing {he} uses is {tool}.", "{he} could not do {his} job without {tool}."]),
            s.Say(["{hero} has been a {job} for {years} years.", "{he} likes {his} job because [{he} can help people|every day is different|{he} loves to learn new things].", ""]),
        };
        return Sentences(lines);
    }

    static string Recipe(Scene s)
    {
        var dish = s.Random.One(Dishes);
        s["dish"] = dish.Name;
        s["ingredients"] = JoinList(dish.Ingredients);
        s["people"] = NumberWord(s.Random.Between(2, 6));
        var lines = new List<string>
        {
            s.Say(["How to make {dish}", "{dish} for {people} people", "An easy recipe for {dish}"]),
            s.Say(["You will need {ingredients}.", "For this you need {ingredients}."]),
        };
        var steps = new List<string>();
        var middleWords = s.Random.Distinct(["Then", "Next", "After that"], 3);
        for (int i = 0; i < dish.Steps.Length; i++)
        {
            string word = i == 0 ? "First" : i == dish.Steps.Length - 1 ? "Finally" : middleWords[(i - 1) % middleWords.Count];
            steps.Add(TemplateText.Capitalize($"{word}, {dish.Steps[i]}."));
        }
        lines.Add(Sentences(steps));
        lines.Add(s.Say(["[Enjoy!|It tastes best with friends.|Ask a grown-up to help you.|Share it with your family.]", ""]));
        return TemplateText.Capitalize(lines[0]) + "\n" + Sentences(lines.Skip(1));
    }

    static string Letter(Scene s)
    {
        var writer = s.CastPerson("hero");
        s.CastPerson("friend", writer);
        s["pet"] = s.Random.One(PetNames);
        s["petkind"] = s.Random.One(PetKinds);
        var animal = s.Random.One(Animals);
        s["animals"] = animal.Plural;
        var (act, actPast, _) = s.Random.One(Activities);
        s["act"] = act; s["actpast"] = actPast;
        s["dear"] = s.Random.One(["Grandma", "Grandpa", "Aunt {name}", "Uncle {name}", "{friend}", "{friend}", "{friend}"]);
        s["dear"] = s.Fill(s["dear"]);
        var body = new List<string>
        {
            s.Say(["How are you?", "I hope you are well.", "Thank you for your letter."]),
            s.Say(["Last week we went to {place}, and I {actpast}.", "On {weekday} we went to {place}. It was [great|fun|lovely]."]),
            s.Say(["The weather here is [sunny|rainy|cold|warm|windy], and the [trees are turning red|flowers are coming out|days are getting longer|days are getting shorter].", ""]),
            s.Say(["{pet} the {petkind} has learned a new trick.", "{pet} is getting bigger every day.", ""]),
            s.Say(["At school I am reading a book about {animals}.", "I am learning to play {instrument}.", "I got a good mark in {subject}."]),
            s.Say(["Next {weekday} we are going to {act}.", "Will you come and visit us in {season}?", "I can't wait to see you again[ in {season}| at {place}|]."]),
        };
        int extra = s.Random.Between(1, 3);
        for (int i = 0; i < extra; i++) body.Insert(2 + i, Clause(s, "I", "I", "my"));
        string closing = s.Say(["Love, {hero}", "Best wishes, {hero}", "See you soon, {hero}", "Lots of love from {hero}"]);
        return $"Dear {s["dear"]},\n{Sentences(body)}\n{closing}";
    }

    static string Town(Scene s)
    {
        s["town"] = s.Random.One(Towns);
        s["people"] = NumberWord(s.Random.Between(2, 9)) + " thousand";
        var places = s.Random.Distinct(Places, 3);
        s["p1"] = places[0]; s["p2"] = places[1]; s["p3"] = places[2];
        s["setting"] = s.Random.One(["by the sea", "near the mountains", "on a wide river", "in a green valley", "next to a big forest", "on a hill"]);
        s["market"] = s.Random.One(Weekdays);
        s["f1"] = s.Random.One(Foods); s["f2"] = s.Random.One(Foods.Where(f => f != s["f1"]).ToArray());
        var (act, _, _) = s.Random.One(Activities);
        s["act"] = act;
        var lines = new List<string>
        {
            s.Say(["{town} is a [small|quiet|busy|pretty|friendly] town {setting}.", "The town of {town} lies {setting}."]),
            s.Say(["About {people} people live there.", "Around {people} people call {town} home."]),
            s.Say(["In the middle of the town there is {p1}, and not far away you can find {p2}.", "The town has {p1}, {p2} and {p3}."]),
            s.Say(["Every {market}, there is a market in the square, where farmers sell {f1} and {f2}.", "On {market}s the square fills with stalls selling {f1} and {f2}."]),
            s.Say(["Many people visit {town} in {season} to {act}.", "In {season}, children come from all around to {act}.", ""]),
            s.Say(["[Most people|Many people] say it is a [lovely|friendly|peaceful] place to live.", "The people of {town} are proud of their town.", ""]),
        };
        return Sentences(lines);
    }

    static string MatchReport(Scene s)
    {
        var teams = s.Random.Distinct(Teams, 2);
        s["t1"] = teams[0]; s["t2"] = teams[1];
        s["sport"] = s.Random.One(Sports);
        int a1 = s.Random.Between(0, 3), b1 = s.Random.Between(0, 3), a2 = s.Random.Between(0, 3), b2 = s.Random.Between(0, 2);
        s["ht"] = $"{NumberWord(a1)} to {NumberWord(b1)}";
        s["a2"] = NumberWord(a2); s["b2"] = NumberWord(b2);
        int a = a1 + a2, b = b1 + b2;
        s["ft"] = $"{NumberWord(a)} to {NumberWord(b)}";
        s.CastPerson("hero");
        s["result"] = a == b ? "so the match was a draw" : $"so {(a > b ? teams[0] : teams[1])} won";
        var lines = new List<string>
        {
            s.Say(["{t1} played {t2} in a {sport} match on {weekday}.", "On {weekday}, {t1} met {t2} for a game of {sport}."]),
            s.Say(["The weather was [cold|wet|sunny|windy], and [lots of|a few hundred] people came to watch.", "The ground [in {town}|] was full of fans[ in {color} scarves|].", ""]),
            s.Say(["At half time it was {ht}[ in {town}|].", "By half time the score was {ht}[ after a [fast|slow|muddy|exciting] start|]."]),
            s.Say(["In the second half, {t1} scored {a2} and {t2} scored {b2}.", "After the break {t1} scored {a2} more and {t2} scored {b2}."]),
            s.Say(["The final score was {ft}, {result}.", "It ended {ft}, {result}."]),
            s.Say(["The best player was {hero}, who [never stopped running|made some great passes|saved the day].", ""]),
        };
        return Sentences(lines);
    }

    static string JoinList(IReadOnlyList<string> items) =>
        items.Count == 1 ? items[0] : string.Join(", ", items.Take(items.Count - 1)) + " and " + items[^1];
}
