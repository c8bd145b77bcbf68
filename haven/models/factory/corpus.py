"""A small bilingual training text for the factory's BPE merges.

Common English prose (with the most frequent English words, code-ish punctuation and
numbers) and common Simplified Chinese sentences, so the learned merges turn everyday text
in both languages into multi-byte tokens. Written for this project; the exact wording does
not matter, only that it is fixed (the merges, and therefore every test model, depend on it).
"""

from __future__ import annotations

ENGLISH = """\
The quick brown fox jumps over the lazy dog. Hello, world! How are you today? I am fine, thank you.
This is a test of the tokenizer. It should split common words into single tokens, and rare words into
pieces. What is the capital of France? The capital of France is Paris. What time is it? It is ten o'clock.
Please tell me a story about a little cat who lived in a small house near the river. Once upon a time,
there was a king who had three daughters. They were kind and clever, and the people of the kingdom loved them.
You are a helpful assistant. Answer the question as well as you can. If you do not know the answer, say so.
The user asked for a summary of the article. Here is a short summary of the main points of the text.
We have been working on this project for a long time, and we would like to thank everyone who helped us.
People often ask what they should do first. The answer depends on the situation, but it is usually best
to start with the simplest thing that could possibly work, and then make it better step by step.
Water boils at 100 degrees and freezes at 0 degrees. There are 365 days in a year and 24 hours in a day.
In 2024 the number of users grew from 1,200 to 15,000. The price is $19.99, or about 20 dollars.
def main(): return 0. if x > 1 and y < 2: print("hello"). {"name": "get_weather", "arguments": {"city": "Paris"}}
First, think about the problem. Then write down the steps. Finally, check the result and explain it.
Think step by step. Let me think about this carefully. The result is correct because the numbers add up.
I think that the weather will be good tomorrow, so we can go to the park and have a picnic with friends.
She said that he would come back later, but nobody knew when. They were waiting for him at the station.
Good morning! Good night! See you later. Thank you very much. You're welcome. I don't know. I can't say.
It's a beautiful day. We're going home. They've been there before. He'll be here soon. I'd like some tea.
The government announced new rules for schools, hospitals and public transport in the city last week.
Science, history, music, language, mathematics, computer, information, people, world, system, question.
"""

CHINESE = """\
你好，世界！今天天气很好，我们去公园散步吧。我是一个人工智能助手，很高兴为你服务。
中国的首都是北京。北京是一个历史悠久的城市，有很多著名的地方，比如故宫和长城。
请问你叫什么名字？我的名字叫小明。我今年二十岁，是一名大学生，我喜欢学习中文和数学。
这个问题很有意思。我们可以一步一步地思考，然后得出一个正确的答案。
谢谢你的帮助！不客气。对不起，我不知道。没关系。再见！明天见。
上海是中国最大的城市之一，也是一个重要的经济中心。很多人在这里工作和生活。
我们应该保护环境，节约用水，减少污染，让我们的地球变得更加美好。
他说他明天会来，但是我们不知道他什么时候到。我们在车站等他。
学习是一件快乐的事情。老师和学生一起讨论问题，大家都很认真。
人工智能正在改变我们的生活和工作方式，这是一个新的时代。
"""

# The most frequent English words and Chinese characters, so they win merges of their own.
COMMON_WORDS = """\
the of and to a in is you that it he was for on are as with his they I at be this have from or one had by
word but not what all were we when your can said there use an each which she do how their if will up other
about out many then them these so some her would make like him into time has look two more write go see
number no way could people my than first water been call who its now find long down day did get come made
may part over new sound take only little work know place year live me back give most very after thing our
just name good sentence man think say great where help through much before line right too mean old any same
tell boy follow came want show also around form three small set put end does another well large must big
even such because turn here why ask went men read need land different home us move try kind hand picture
again change off play spell air away animal house point page letter mother answer found study still learn
should America world high every near add food between own below country plant last school father keep tree
never start city earth eye light thought head under story saw left don't few while along might close
something seem next hard open example begin life always those both paper together got group often run
的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之
过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如
前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明
"""

# Chinese is repeated so its byte pairs (three bytes per character) win enough merges to
# form whole characters and common words, not just partial UTF-8 sequences.
CORPUS = ENGLISH + COMMON_WORDS * 2 + CHINESE * 3
