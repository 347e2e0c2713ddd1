from clickstream.cli import main

main()
