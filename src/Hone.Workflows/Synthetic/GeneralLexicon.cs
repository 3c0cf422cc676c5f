namespace Hone.Synthetic;

/// <summary>
/// The word tables of the general corpus. Everyday vocabulary only: no words of the e-commerce domain (orders,
/// deliveries, refunds, tracking, accounts, payments…), so that fine-tuning on that domain is a real shift; "shop",
/// "buy", "money", "price", names, towns, numbers and dates are the small shared part.
/// </summary>
static class GeneralLexicon
{
    public sealed record Person(string Name, bool Female);

    public static readonly Person[] People =
    [
        new("Anna", true), new("Lily", true), new("Mia", true), new("Sara", true), new("Emma", true), new("Nora", true), new("Ruby", true),
        new("Alice", true), new("Grace", true), new("Hannah", true), new("Zoe", true), new("Maya", true), new("Chloe", true), new("Ella", true),
        new("Amy", true), new("Rosa", true), new("Ivy", true), new("Lucy", true), new("Kate", true), new("Leah", true), new("Nina", true),
        new("Jade", true), new("Tara", true), new("Eva", true), new("Clara", true), new("Iris", true), new("Daisy", true), new("Molly", true),
        new("Ada", true), new("Priya", true), new("Amara", true), new("Yuki", true), new("Fatima", true), new("Elsa", true),
        new("Tom", false), new("Ben", false), new("Sam", false), new("Max", false), new("Leo", false), new("Jack", false), new("Finn", false),
        new("Adam", false), new("Noah", false), new("Oscar", false), new("Hugo", false), new("Felix", false), new("Omar", false), new("Ravi", false),
        new("Luke", false), new("Jonas", false), new("Theo", false), new("Ezra", false), new("Kai", false), new("Milo", false), new("Owen", false),
        new("Ivan", false), new("Carl", false), new("Dan", false), new("Paul", false), new("Tim", false), new("Eli", false), new("Rory", false),
        new("Joe", false), new("Kofi", false), new("Mateo", false), new("Arjun", false),
        new("Hazel", true), new("Freya", true), new("Layla", true), new("Mina", true), new("Olive", true), new("Poppy", true), new("Sienna", true),
        new("Tilly", true), new("Esme", true), new("Aria", true), new("Bea", true), new("Cora", true), new("Dina", true), new("Edie", true),
        new("Greta", true), new("Holly", true), new("Imani", true), new("Juno", true), new("Lola", true), new("Mabel", true), new("Nell", true),
        new("Alfie", false), new("Bilal", false), new("Caleb", false), new("Dev", false), new("Eddie", false), new("Frank", false), new("George", false),
        new("Harry", false), new("Isaac", false), new("Jamie", false), new("Kian", false), new("Louis", false), new("Marcus", false), new("Ned", false),
        new("Otto", false), new("Percy", false), new("Reuben", false), new("Seb", false), new("Toby", false), new("Wes", false), new("Zane", false),
    ];

    /// <summary>Everyday objects and the adjectives that suit any of them (for the clause grammar).</summary>
    public static readonly string[] Objects =
    [
        "basket", "box", "chair", "lamp", "blanket", "cup", "bowl", "jar", "kite", "ball", "book", "map", "bag", "bottle", "bucket", "brush",
        "candle", "coat", "hat", "jumper", "pillow", "rope", "spoon", "teapot", "wagon", "bench", "drum", "flag", "vase", "mirror", "ladder",
        "clock", "sledge", "notebook", "shell", "stone", "feather", "key", "scarf", "boot", "tent", "torch", "bicycle", "bell", "jug", "rug",
    ];
    public static readonly string[] ObjectAdjectives =
    [
        "old", "new", "little", "big", "heavy", "light", "shiny", "dusty", "wooden", "round", "square", "striped", "spotty", "soft", "tiny",
        "huge", "broken", "clean", "muddy", "warm", "bright", "dark", "funny", "strange", "beautiful", "plain", "red", "blue", "green",
        "yellow", "orange", "purple", "brown", "black", "white", "grey", "pink", "golden", "silver",
    ];
    public static readonly string[] Adverbs =
        ["quietly", "quickly", "slowly", "carefully", "happily", "proudly", "gently", "bravely", "patiently", "excitedly", "cheerfully", "calmly", "eagerly", "sleepily"];
    public static readonly string[] DayAdjectives = ["good", "lovely", "busy", "long", "quiet", "fun", "strange", "wonderful", "tiring", "happy", "great", "nice"];
    public static readonly string[] Outdoors =
    [
        "in the park", "by the river", "near the old mill", "at the edge of the forest", "on the hill behind the school", "in the garden",
        "by the pond", "on the beach", "in the meadow", "behind the barn", "under the big oak tree", "near the bridge", "in the square",
        "by the harbour", "along the canal", "in the orchard", "next to the playground", "on the village green", "by the lake", "in the woods",
    ];
    public static readonly string[] Neighbours =
        ["the baker", "the old farmer", "a neighbour", "the teacher", "the librarian", "a friendly woman", "an old man", "the postman", "the gardener", "a girl from next door", "a boy from school", "the vet"];
    public static readonly string[] Games = ["tag", "chess", "cards", "hide and seek", "football", "marbles", "hopscotch", "catch", "a board game", "skipping"];
    public static readonly string[] Purposes =
    [
        "get some fresh air", "see the sunset", "surprise a friend", "finish before dark", "help a neighbour", "learn something new",
        "keep warm", "cheer everyone up", "make the garden look nice", "have something to show at school", "save some money", "be ready for the weekend",
    ];
    public static readonly string[] Topics = ["the weather", "school", "their pets", "the holidays", "a funny dream", "football", "old times", "the new library", "a film they had seen", "the stars"];
    public static readonly string[] Skills = ["tie a knot", "whistle", "bake bread", "plant bulbs", "fold a paper boat", "knit a scarf", "skim stones", "play a new song", "draw a horse", "read a map"];
    public static readonly string[] Materials = ["wood", "paper", "cardboard", "old boxes", "clay", "string and sticks", "scraps of cloth"];

    /// <summary>Family members: word, whether "she".</summary>
    public static readonly (string Word, bool Female)[] Relatives =
    [
        ("mum", true), ("dad", false), ("grandma", true), ("grandpa", false), ("aunt", true), ("uncle", false),
        ("big sister", true), ("big brother", false), ("mother", true), ("father", false), ("granny", true), ("cousin", false),
    ];

    public static readonly string[] PetNames = ["Biscuit", "Pepper", "Sunny", "Coco", "Whiskers", "Patch", "Ginger", "Bramble", "Pickle", "Socks", "Button", "Shadow", "Toffee", "Nutmeg", "Pebble", "Maple"];
    public static readonly string[] PetKinds = ["dog", "cat", "rabbit", "parrot", "hamster", "tortoise", "puppy", "kitten", "guinea pig"];

    public static readonly string[] Towns =
    [
        "Millbrook", "Riverton", "Ashford", "Lakeside", "Oakham", "Stonebridge", "Fairview", "Greenfield", "Westport", "Hillcrest", "Brightwater",
        "Elmwood", "Kingsley", "Northgate", "Redcliff", "Maplewood", "Sandford", "Clearwater", "Foxley", "Bramblebury", "Pinehurst", "Seabrook",
        "Willowdale", "Cold Harbour", "Highmoor", "Larkfield", "Amberley", "Birchwood", "Crowhurst", "Dunmore", "Eastbrook", "Fernhill",
        "Glenmore", "Hollowell", "Ivybridge", "Kestrel Bay", "Longmead", "Marsh End", "Newhaven", "Otterford", "Pebbleton", "Rosedale",
    ];

    public static readonly string[] Places =
    [
        "the park", "the library", "the market", "the beach", "the museum", "the zoo", "the station", "the bakery", "the swimming pool",
        "the river", "the forest", "the hill", "the farm", "the garden", "the playground", "the square", "the harbour", "the lake",
        "the cinema", "the town hall", "the old castle", "the sports field", "the bridge", "the woods", "the meadow", "the pond",
    ];

    public static readonly string[] Rooms = ["the kitchen", "the living room", "the bedroom", "the hall", "the attic", "the garden shed", "the bathroom", "the garage"];
    public static readonly string[] HidingSpots =
        ["under the bed", "behind the sofa", "in the garden", "on the kitchen table", "under a pile of coats", "in the car", "behind the door",
         "in the washing basket", "on the top shelf", "under the stairs", "in the toy box", "next to the back door", "in a coat pocket"];

    public static readonly string[] Foods =
    [
        "apples", "bread", "soup", "rice", "noodles", "cheese", "eggs", "pancakes", "carrots", "strawberries", "fish", "potatoes", "beans",
        "cake", "cookies", "oranges", "tomatoes", "pears", "porridge", "sandwiches", "pasta", "salad", "plums", "cherries", "peas",
        "honey", "yoghurt", "grapes", "bananas", "muffins", "pizza", "corn", "mushrooms", "lemons", "cucumbers", "nuts",
    ];
    public static readonly string[] Meals = ["breakfast", "lunch", "dinner", "tea", "supper"];
    public static readonly string[] Drinks = ["milk", "water", "orange juice", "hot chocolate", "tea", "apple juice", "lemonade", "warm milk"];

    public static readonly string[] Colors = ["red", "blue", "green", "yellow", "orange", "purple", "brown", "black", "white", "grey", "pink", "golden"];
    public static readonly string[] GoodFeelings = ["happy", "proud", "excited", "glad", "calm", "pleased", "cheerful", "delighted"];
    public static readonly string[] BadFeelings = ["sad", "worried", "tired", "nervous", "cross", "upset", "bored", "lonely", "grumpy"];

    public static readonly string[] Weekdays = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
    public static readonly string[] Months = Dates.Months;
    public static readonly string[] Seasons = ["spring", "summer", "autumn", "winter"];
    public static readonly string[] DayParts = ["morning", "afternoon", "evening"];

    public static readonly string[] Ones = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
                                            "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"];
    public static readonly string[] Tens = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"];
    public static readonly string[] Ordinals = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "eleventh", "twelfth"];

    public static string NumberWord(int n) => n switch
    {
        < 20 => Ones[n],
        < 100 => n % 10 == 0 ? Tens[n / 10] : $"{Tens[n / 10]}-{Ones[n % 10]}",
        < 1000 => n % 100 == 0 ? $"{Ones[n / 100]} hundred" : $"{Ones[n / 100]} hundred and {NumberWord(n % 100)}",
        _ => n.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    /// <summary>"half past seven", "a quarter to four", "nine o'clock" for hour 1..12 and minute 0/15/30/45.</summary>
    public static string ClockWords(int hour, int minute) => minute switch
    {
        0 => $"{Ones[hour]} o'clock",
        15 => $"a quarter past {Ones[hour]}",
        30 => $"half past {Ones[hour]}",
        _ => $"a quarter to {Ones[hour % 12 + 1]}",
    };

    /// <summary>Activities: base, past, -ing (for "wanted to X", "X-ed", "was X-ing").</summary>
    public static readonly (string Base, string Past, string Ing)[] Activities =
    [
        ("play football", "played football", "playing football"), ("read a book", "read a book", "reading a book"),
        ("draw a picture", "drew a picture", "drawing a picture"), ("bake a cake", "baked a cake", "baking a cake"),
        ("fly a kite", "flew a kite", "flying a kite"), ("ride a bike", "rode a bike", "riding a bike"),
        ("go swimming", "went swimming", "swimming"), ("build a sandcastle", "built a sandcastle", "building a sandcastle"),
        ("plant some seeds", "planted some seeds", "planting some seeds"), ("feed the ducks", "fed the ducks", "feeding the ducks"),
        ("walk the dog", "walked the dog", "walking the dog"), ("climb a tree", "climbed a tree", "climbing a tree"),
        ("pick berries", "picked berries", "picking berries"), ("watch the stars", "watched the stars", "watching the stars"),
        ("play the piano", "played the piano", "playing the piano"), ("sing songs", "sang songs", "singing songs"),
        ("go fishing", "went fishing", "fishing"), ("play chess", "played chess", "playing chess"),
        ("make a den", "made a den", "making a den"), ("paint the fence", "painted the fence", "painting the fence"),
        ("look for shells", "looked for shells", "looking for shells"), ("skip stones on the water", "skipped stones on the water", "skipping stones on the water"),
        ("play hide and seek", "played hide and seek", "playing hide and seek"), ("tidy the garden", "tidied the garden", "tidying the garden"),
        ("write a story", "wrote a story", "writing a story"), ("do a puzzle", "did a puzzle", "doing a puzzle"),
        ("have a picnic", "had a picnic", "having a picnic"), ("go for a long walk", "went for a long walk", "going for a long walk"),
    ];
    public static readonly (string Base, string Past, string Ing)[] IndoorActivities =
    [
        ("read a book", "read a book", "reading a book"), ("draw a picture", "drew a picture", "drawing a picture"),
        ("bake a cake", "baked a cake", "baking a cake"), ("play chess", "played chess", "playing chess"), ("do a puzzle", "did a puzzle", "doing a puzzle"),
        ("build a tower of blocks", "built a tower of blocks", "building a tower of blocks"), ("make a den out of blankets", "made a den out of blankets", "making a den out of blankets"),
        ("write a story", "wrote a story", "writing a story"), ("play the piano", "played the piano", "playing the piano"), ("play a board game", "played a board game", "playing a board game"),
    ];

    /// <summary>Things that get lost: noun (with "the"/"his" fitting), and whether plural.</summary>
    public static readonly (string Noun, bool Plural)[] LostThings =
    [
        ("hat", false), ("ball", false), ("library book", false), ("keys", true), ("scarf", false), ("toy rabbit", false), ("glasses", true),
        ("gloves", true), ("lunch box", false), ("blue pencil", false), ("umbrella", false), ("watch", false), ("boots", true), ("kite", false),
        ("drawing", false), ("school bag", false), ("football", false), ("recorder", false),
    ];

    public static readonly (string Noun, string Fixer, string Fix)[] BrokenThings =
    [
        ("bike", "the chain had come off", "put the chain back on"), ("kite", "the string had snapped", "tied the string together"),
        ("toy car", "a wheel had fallen off", "glued the wheel back on"), ("umbrella", "one of the spokes was bent", "bent the spoke straight again"),
        ("chair", "one leg was loose", "tightened the screws"), ("lamp", "the bulb had gone out", "changed the bulb"),
        ("clock", "the battery was flat", "put in a new battery"), ("fence", "a board was broken", "nailed on a new board"),
        ("swing", "the rope was frayed", "tied on a new rope"), ("teapot", "the lid had cracked", "found a new lid"),
    ];

    /// <summary>Animals with facts that stay true across the corpus (a small model can learn them as knowledge).</summary>
    public sealed record Animal(string Name, string Plural, string Kind, string Home, string[] Eats, int Size, string Color, string Can, string Baby, string Sound);

    // Size: 1 tiny … 6 huge (used for true comparisons).
    public static readonly Animal[] Animals =
    [
        new("fox", "foxes", "mammal", "woods and fields", ["mice", "berries", "beetles"], 3, "red", "hear a mouse under the snow", "cub", "barks"),
        new("owl", "owls", "bird", "old trees", ["mice", "voles", "moths"], 2, "brown", "turn its head a long way round", "owlet", "hoots"),
        new("rabbit", "rabbits", "mammal", "burrows under the ground", ["grass", "clover", "carrots"], 2, "brown", "run very fast", "kit", "thumps its feet"),
        new("duck", "ducks", "bird", "ponds and rivers", ["water plants", "seeds", "snails"], 2, "brown", "swim and fly", "duckling", "quacks"),
        new("cow", "cows", "mammal", "fields on farms", ["grass", "hay"], 5, "black and white", "sleep standing up", "calf", "moos"),
        new("horse", "horses", "mammal", "fields and stables", ["grass", "hay", "oats"], 5, "brown", "run for a long time", "foal", "neighs"),
        new("sheep", "sheep", "mammal", "hills and fields", ["grass", "clover"], 4, "white", "grow thick wool", "lamb", "bleats"),
        new("frog", "frogs", "amphibian", "ponds and wet grass", ["flies", "worms", "slugs"], 1, "green", "jump many times its own length", "tadpole", "croaks"),
        new("bee", "bees", "insect", "hives", ["nectar", "pollen"], 1, "yellow and black", "make honey", "larva", "buzzes"),
        new("hedgehog", "hedgehogs", "mammal", "hedges and gardens", ["beetles", "worms", "slugs"], 2, "brown", "roll into a prickly ball", "hoglet", "snuffles"),
        new("squirrel", "squirrels", "mammal", "tall trees", ["nuts", "seeds", "acorns"], 2, "grey", "climb up a tree in a second", "kit", "chatters"),
        new("elephant", "elephants", "mammal", "grasslands and forests", ["grass", "leaves", "fruit"], 6, "grey", "pick things up with its trunk", "calf", "trumpets"),
        new("bear", "bears", "mammal", "forests and mountains", ["berries", "fish", "roots"], 5, "brown", "sleep through the winter", "cub", "growls"),
        new("robin", "robins", "bird", "gardens and hedges", ["worms", "seeds", "berries"], 1, "brown with a red chest", "sing even in winter", "chick", "sings"),
        new("goat", "goats", "mammal", "hills and farms", ["grass", "leaves", "bark"], 4, "white", "climb steep rocks", "kid", "bleats"),
        new("seal", "seals", "mammal", "cold seas and beaches", ["fish", "squid"], 4, "grey", "hold its breath for a long time", "pup", "barks"),
        new("snail", "snails", "mollusc", "damp gardens", ["leaves", "flowers"], 1, "brown", "carry its house on its back", "hatchling", "makes no sound"),
        new("deer", "deer", "mammal", "forests and meadows", ["grass", "leaves", "acorns"], 4, "brown", "jump over high fences", "fawn", "barks"),
        new("mouse", "mice", "mammal", "fields and old houses", ["seeds", "grain", "berries"], 1, "grey", "squeeze through tiny holes", "pup", "squeaks"),
        new("whale", "whales", "mammal", "the deep ocean", ["tiny shrimp", "fish"], 6, "blue-grey", "sing songs under the water", "calf", "sings"),
        new("penguin", "penguins", "bird", "icy coasts", ["fish", "krill"], 3, "black and white", "swim fast but not fly", "chick", "squawks"),
        new("tortoise", "tortoises", "reptile", "warm dry places", ["leaves", "flowers", "fruit"], 2, "brown", "live for a very long time", "hatchling", "hisses"),
        new("goose", "geese", "bird", "lakes and fields", ["grass", "seeds"], 3, "grey", "fly a long way in a V shape", "gosling", "honks"),
        new("badger", "badgers", "mammal", "setts in the woods", ["worms", "roots", "berries"], 3, "black and white", "dig very quickly", "cub", "grunts"),
    ];

    public static readonly string[] SizeWords = ["", "tiny", "small", "middle-sized", "big", "large", "huge"];

    /// <summary>Jobs: job, where, what they do (present, third person), a tool, why someone likes it.</summary>
    public sealed record Job(string Name, string Where, string[] Does, string Tool, string Start);

    public static readonly Job[] Jobs =
    [
        new("baker", "a bakery", ["bakes bread and rolls", "makes cakes for birthdays", "mixes flour, water and yeast"], "a big oven", "very early, before the sun comes up"),
        new("teacher", "a school", ["teaches children to read and write", "marks homework", "reads stories to the class"], "a whiteboard", "at eight o'clock"),
        new("doctor", "a hospital", ["helps people who are ill", "listens to people's hearts", "gives medicine to patients"], "a stethoscope", "at seven o'clock"),
        new("farmer", "a farm", ["feeds the animals", "grows wheat and potatoes", "milks the cows"], "a tractor", "at dawn"),
        new("vet", "an animal clinic", ["looks after sick animals", "checks the teeth of dogs and cats", "helps lambs to be born"], "a small torch", "at eight o'clock"),
        new("firefighter", "a fire station", ["puts out fires", "rescues people", "teaches children about fire safety"], "a long hose", "at six o'clock"),
        new("gardener", "a large park", ["plants flowers", "cuts the grass", "trims the hedges"], "a spade", "at half past seven"),
        new("pilot", "an airport", ["flies planes", "checks the weather before each flight", "talks to the control tower"], "a map of the sky", "at different times every day"),
        new("librarian", "a library", ["helps people find books", "puts books back on the shelves", "runs a reading club"], "a computer", "at nine o'clock"),
        new("builder", "building sites", ["builds houses", "lays bricks", "mixes cement"], "a hammer", "at seven o'clock"),
        new("fisherman", "a small harbour", ["catches fish", "mends nets", "sails out to sea"], "a fishing boat", "before sunrise"),
        new("cook", "a restaurant", ["cooks meals", "chops vegetables", "makes soup"], "a sharp knife", "at ten o'clock"),
        new("nurse", "a hospital", ["looks after patients", "checks temperatures", "helps the doctors"], "a thermometer", "at seven o'clock"),
        new("painter", "people's houses", ["paints walls", "mixes colours", "paints doors and windows"], "a brush", "at eight o'clock"),
        new("bus driver", "the bus depot", ["drives the bus around town", "helps people get on and off", "stops at every bus stop"], "a big steering wheel", "at six o'clock"),
        new("police officer", "the police station", ["keeps people safe", "helps lost children", "directs traffic"], "a radio", "at seven o'clock"),
    ];

    /// <summary>Dishes: name, ingredients, steps (imperative).</summary>
    public sealed record Dish(string Name, string[] Ingredients, string[] Steps);

    public static readonly Dish[] Dishes =
    [
        new("pancakes", ["flour", "milk", "two eggs", "a pinch of salt", "butter"],
            ["mix the flour and the salt in a bowl", "add the eggs and the milk and whisk until smooth", "melt a little butter in a pan", "pour in some batter and cook each side until golden"]),
        new("vegetable soup", ["carrots", "potatoes", "an onion", "water", "salt"],
            ["wash and chop the vegetables", "cook the onion in a little oil", "add the carrots, the potatoes and the water", "let it bubble gently for half an hour"]),
        new("fruit salad", ["apples", "bananas", "grapes", "oranges", "a spoon of honey"],
            ["wash the fruit", "cut the apples and the bananas into small pieces", "peel the oranges", "mix everything in a bowl with the honey"]),
        new("a cheese sandwich", ["bread", "butter", "cheese", "a tomato"],
            ["spread butter on two slices of bread", "cut the cheese into thin slices", "slice the tomato", "put everything between the bread and cut it in half"]),
        new("porridge", ["oats", "milk", "a pinch of salt", "honey"],
            ["put the oats and the milk in a pan", "stir it over a low heat", "cook it for five minutes until it is thick", "pour it into a bowl and add honey"]),
        new("lemonade", ["lemons", "water", "sugar", "ice"],
            ["squeeze the lemons", "stir the sugar into the water", "add the lemon juice", "pour it over ice"]),
        new("banana bread", ["three ripe bananas", "flour", "sugar", "an egg", "butter"],
            ["mash the bananas with a fork", "mix in the melted butter, the sugar and the egg", "stir in the flour", "bake it in a warm oven for an hour"]),
        new("tomato pasta", ["pasta", "tomatoes", "garlic", "olive oil", "cheese"],
            ["boil the pasta in salty water", "fry the garlic in the olive oil", "add the chopped tomatoes and cook them slowly", "mix the sauce with the pasta and add cheese on top"]),
        new("apple crumble", ["apples", "flour", "butter", "sugar", "cinnamon"],
            ["peel and slice the apples", "put them in a dish with the cinnamon", "rub the butter into the flour and the sugar", "spread the crumble on top and bake it until golden"]),
        new("scrambled eggs", ["four eggs", "milk", "butter", "salt"],
            ["crack the eggs into a bowl", "beat them with a little milk and salt", "melt the butter in a pan", "stir the eggs gently until they are just set"]),
    ];

    public static readonly string[] Vehicles = ["train", "bus", "boat", "car", "plane", "ferry", "coach"];
    public static readonly string[] Sights =
    [
        "fields full of sheep", "a tall lighthouse", "a windmill", "a long river", "snowy mountains", "a herd of cows", "a castle on a hill",
        "a big forest", "small villages", "a waterfall", "boats on the sea", "a field of sunflowers", "a hot air balloon", "a rainbow",
    ];

    /// <summary>Simple facts that stay true (told in varied frames).</summary>
    public static readonly string[] Facts =
    [
        "there are seven days in a week", "there are twelve months in a year", "an hour has sixty minutes", "a minute has sixty seconds",
        "water freezes when it is very cold and turns into ice", "the sun rises in the east and sets in the west", "plants need water and light to grow",
        "if you mix blue and yellow, you get green", "if you mix red and white, you get pink", "if you mix red and yellow, you get orange",
        "the moon goes around the earth", "the earth goes around the sun", "bees make honey from the nectar of flowers", "a spider has eight legs",
        "an insect has six legs", "fish breathe through their gills", "ice melts when it gets warm", "the opposite of hot is cold",
        "the opposite of big is small", "the opposite of early is late", "the opposite of happy is sad", "a triangle has three sides",
        "a square has four equal sides", "leaves fall from many trees in autumn", "birds build nests in spring", "rain comes from clouds",
        "a caterpillar turns into a butterfly", "a tadpole turns into a frog", "wood floats on water", "a stone sinks in water",
        "the heart pumps blood around the body", "we see lightning before we hear thunder", "snow is made of tiny ice crystals",
        "a year has four seasons", "a rainbow has seven colours", "sound travels through the air", "the wind can turn a windmill",
    ];

    /// <summary>Weather: condition phrase, lowest and highest plausible temperature, what to bring.</summary>
    public sealed record Weather(string Name, string Sky, int Low, int High, string Bring);

    public static readonly Weather[] WeatherKinds =
    [
        new("sunny", "bright sunshine all day", 12, 32, "a sun hat"), new("rainy", "heavy rain", 4, 20, "an umbrella"),
        new("cloudy", "grey clouds", 3, 22, "a light jacket"), new("windy", "strong winds", 2, 18, "a warm coat"),
        new("snowy", "snow showers", -8, 1, "a scarf and gloves"), new("foggy", "thick fog in the morning", 0, 14, "a torch for the dark lanes"),
        new("stormy", "thunderstorms", 10, 26, "a raincoat"), new("frosty", "frost and clear skies", -6, 4, "a woolly hat"),
        new("drizzly", "light drizzle", 5, 17, "a hood"), new("warm", "warm sunshine with a few clouds", 16, 28, "a bottle of water"),
    ];

    public static readonly string[] Regions = ["the north", "the south", "the east", "the west", "the hills", "the coast", "the valleys", "the islands"];

    public static readonly string[] Teams = ["the Red Foxes", "the Blue Herons", "the Green Otters", "the Yellow Bees", "the Silver Hawks", "the River Rovers", "the Hill Rangers", "the Stormy Petrels"];
    public static readonly string[] Sports = ["football", "hockey", "netball", "basketball", "rugby"];

    public static readonly string[] Presents = ["a book about the stars", "a box of paints", "a paper crown", "a jar of homemade jam", "a drawing of a horse",
                                                "a kite", "a small plant in a pot", "a bag of marbles", "a knitted scarf", "a wooden boat", "a bracelet made of beads"];
    public static readonly string[] Instruments = ["the piano", "the violin", "the guitar", "the drums", "the flute", "the trumpet"];
    public static readonly string[] Subjects = ["maths", "reading", "science", "art", "music", "history", "geography", "swimming"];
}
