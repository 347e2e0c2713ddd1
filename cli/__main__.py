from clickstream.cli.main import main

main()
