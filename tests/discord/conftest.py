from tests.discord.plugin import fake_discord as fake_discord
